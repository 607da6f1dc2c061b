//! `docker exec` in a running session's container: the command's output (each stream cut
//! at [`MAX_EXEC_OUTPUT`] bytes) and exit code, within a time limit.

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::StreamExt;
use shoal_protocol::sessions::{ExecResult, MAX_EXEC_OUTPUT};

use super::docker::container_name;
use super::{DockerExecutor, ExecError};

/// Appends `bytes` to `out`, keeping at most [`MAX_EXEC_OUTPUT`]; true when some were cut.
fn keep(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    let room = MAX_EXEC_OUTPUT.saturating_sub(out.len());
    out.extend_from_slice(&bytes[..bytes.len().min(room)]);
    bytes.len() > room
}

impl DockerExecutor {
    /// The id of the local image `image`, `None` if this engine does not have it.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>, ExecError> {
        let docker = self.client().await?;
        match docker.inspect_image(image).await {
            Ok(inspected) => Ok(inspected.id),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// The id of the image the container of `attempt` of `job` runs, if it exists.
    pub async fn container_image_id(
        &self,
        job: u64,
        attempt: u32,
    ) -> Result<Option<String>, ExecError> {
        let docker = self.client().await?;
        let name = container_name(self.node_tag(), job, attempt);
        match docker.inspect_container(&name, None).await {
            Ok(inspected) => Ok(inspected.image),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Runs `command` in the container of `attempt` of `job` and waits for it to end, or
    /// for `limit` (then the answer is an error; the command may go on in the container).
    pub async fn exec(
        &self,
        job: u64,
        attempt: u32,
        command: &[String],
        limit: Duration,
    ) -> Result<ExecResult, ExecError> {
        let docker = self.client().await?;
        let container = container_name(self.node_tag(), job, attempt);
        let options = CreateExecOptions {
            cmd: Some(command.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..CreateExecOptions::default()
        };
        let created = docker.create_exec(&container, options).await?;
        let run = async {
            let (mut stdout, mut stderr, mut truncated) = (Vec::new(), Vec::new(), false);
            if let StartExecResults::Attached { mut output, .. } =
                docker.start_exec(&created.id, None).await?
            {
                while let Some(part) = output.next().await {
                    truncated |= match part? {
                        LogOutput::StdErr { message } => keep(&mut stderr, &message),
                        LogOutput::StdOut { message } | LogOutput::Console { message } => {
                            keep(&mut stdout, &message)
                        }
                        LogOutput::StdIn { .. } => false,
                    };
                }
            }
            let inspected = docker.inspect_exec(&created.id).await?;
            Ok::<_, ExecError>(ExecResult {
                exit_code: inspected.exit_code.unwrap_or(-1),
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
                truncated,
            })
        };
        tokio::time::timeout(limit, run)
            .await
            .map_err(|_| ExecError::TimedOut(format!("the command did not end within {limit:?}")))?
    }
}

/// An interactive shell in a session's container, with a terminal.
pub struct Shell {
    pub control: ShellControl,
    pub output: std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

/// What resizes a [`Shell`] and reads its exit code.
pub struct ShellControl {
    docker: bollard::Docker,
    exec_id: String,
}

impl ShellControl {
    /// Tells the shell its terminal's size.
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<(), ExecError> {
        let size = bollard::exec::ResizeExecOptions {
            height: rows,
            width: cols,
        };
        Ok(self.docker.resize_exec(&self.exec_id, size).await?)
    }

    /// The shell's exit code, once it has exited.
    pub async fn exit_code(&self) -> Option<i64> {
        let inspected = self.docker.inspect_exec(&self.exec_id).await.ok()?;
        inspected.exit_code
    }
}

impl DockerExecutor {
    /// Starts `command` with a terminal of `cols` x `rows` in the container of `attempt` of
    /// `job`, its stdin open.
    pub async fn shell(
        &self,
        job: u64,
        attempt: u32,
        command: &[String],
        (cols, rows): (u16, u16),
    ) -> Result<Shell, ExecError> {
        let docker = self.client().await?;
        let container = container_name(self.node_tag(), job, attempt);
        let options = CreateExecOptions {
            cmd: Some(command.to_vec()),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(true),
            env: Some(vec!["TERM=xterm".to_string()]),
            ..CreateExecOptions::default()
        };
        let created = docker.create_exec(&container, options).await?;
        let start = bollard::exec::StartExecOptions {
            detach: false,
            tty: true,
            output_capacity: None,
        };
        match docker.start_exec(&created.id, Some(start)).await? {
            StartExecResults::Attached { output, input } => {
                let shell = Shell {
                    control: ShellControl {
                        docker,
                        exec_id: created.id,
                    },
                    output,
                    input,
                };
                // A terminal size set before the shell reads it; best effort.
                let _ = shell.control.resize(cols, rows).await;
                Ok(shell)
            }
            StartExecResults::Detached => Err(ExecError::InvalidSpec(
                "docker started the shell detached".into(),
            )),
        }
    }
}
