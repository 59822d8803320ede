//! A TCP relay in front of the fixture Redis that a test can cut and restore.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the relay does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Open,
    /// Close every connection and refuse new ones (Redis down).
    Refuse,
    /// Keep connections open but pass nothing (a dead network).
    Blackhole,
    /// Pass commands to Redis but hold its replies (answers lost after Redis ran the command).
    HoldReplies,
}

pub struct Relay {
    pub port: u16,
    mode: watch::Sender<Mode>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    replies: bool,
) {
    let held = |m: Mode| m == Mode::Blackhole || (replies && m == Mode::HoldReplies);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // While blackholed, hold the bytes: nothing passes until the relay is restored.
        while held(*mode.borrow()) {
            if mode.changed().await.is_err() {
                return;
            }
        }
        if *mode.borrow() == Mode::Refuse || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Relay {
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("addr").port();
        let (mode, rx) = watch::channel(Mode::Open);
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let tasks_in = Arc::clone(&tasks);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let current = *rx.borrow();
                if current == Mode::Refuse {
                    drop(client);
                    continue;
                }
                let rx = rx.clone();
                let task = tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        () = pipe(cr, sw, rx.clone(), false) => {}
                        () = pipe(sr, cw, rx, true) => {}
                    }
                });
                tasks_in.lock().unwrap().push(task);
            }
        });
        Self {
            port,
            mode,
            tasks,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn drop_connections(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Cuts traffic the given way.
    pub fn cut(&self, mode: Mode) {
        self.mode.send_replace(mode);
        if mode == Mode::Refuse {
            self.drop_connections();
        }
    }

    /// Lets traffic through again; blackholed connections are closed so clients reconnect.
    pub fn restore(&self) {
        if matches!(*self.mode.borrow(), Mode::Blackhole | Mode::HoldReplies) {
            self.drop_connections();
        }
        self.mode.send_replace(Mode::Open);
    }

    /// Waits a little for connection teardown to settle (used between phases).
    pub async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_connections();
    }
}
