//! `shoal session attach ID`: the local terminal, in raw mode, wired to a shell in the
//! session, like `docker exec -it`. The shell's exit code is the command's.

use std::io::{IsTerminal, Read, Write};

use shoal_protocol::JobId;
use tokio::sync::mpsc;

use crate::client::{Client, ClientError, TerminalInput};

/// Puts the terminal in raw mode while alive (when stdin is a terminal).
struct RawMode(bool);

impl RawMode {
    fn enter() -> RawMode {
        let tty = std::io::stdin().is_terminal();
        RawMode(tty && crossterm::terminal::enable_raw_mode().is_ok())
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if self.0 {
            let _ = crossterm::terminal::disable_raw_mode();
        }
    }
}

pub async fn run(client: &Client, id: JobId) -> Result<u8, ClientError> {
    let size = crossterm::terminal::size().unwrap_or((80, 24));
    let (typed, input) = mpsc::channel::<TerminalInput>(64);
    // Stdin blocks: a thread of its own reads it.
    let keys = typed.clone();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stdin.read(&mut buffer) {
            let bytes = TerminalInput::Typed(buffer[..n].to_vec());
            if n == 0 || keys.blocking_send(bytes).is_err() {
                break;
            }
        }
    });
    // A resized window is sent on as the terminal's new size.
    if let Ok(mut resized) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
    {
        tokio::spawn(async move {
            while resized.recv().await.is_some() {
                if let Ok((cols, rows)) = crossterm::terminal::size()
                    && typed
                        .send(TerminalInput::Resized { cols, rows })
                        .await
                        .is_err()
                {
                    break;
                }
            }
        });
    }
    let raw = RawMode::enter();
    let mut stdout = std::io::stdout();
    let ended = client
        .attach(id, size, input, |bytes| {
            let _ = stdout.write_all(bytes);
            let _ = stdout.flush();
        })
        .await;
    drop(raw);
    let code = ended?;
    Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}
