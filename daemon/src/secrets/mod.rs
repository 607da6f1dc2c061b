//! What the cluster secret vouches for or keeps sealed: the job token running work
//! presents ([`job_token`]), the secret environment values jobs carry ([`env`]) and the
//! passwords of registries ([`registry`]), all sealed one way ([`seal`]).

pub mod env;
pub mod job_token;
pub mod registry;
pub mod seal;
