//! What the cluster secret vouches for or keeps sealed: the job token running work
//! presents ([`job_token`]) and the secret environment values jobs carry ([`env`]).

pub mod env;
pub mod job_token;
