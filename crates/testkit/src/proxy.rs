//! A fault-injecting TCP proxy for tests: put it between a service and its database (or a store)
//! and add latency, stall every byte, or cut every connection, then lift the fault.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// What the proxy does to the bytes it forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forwards at once.
    None,
    /// Holds every chunk this long before forwarding it.
    Latency(Duration),
    /// Forwards nothing until the fault changes (connections stay open).
    Stall,
}

/// A running proxy; dropped, it stops accepting and cuts its connections.
pub struct FaultProxy {
    pub addr: SocketAddr,
    fault: watch::Sender<Fault>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    acceptor: AbortHandle,
}

impl FaultProxy {
    /// Listens on a loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (fault, _) = watch::channel(Fault::None);
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let acceptor = {
            let fault = fault.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let fault = fault.subscribe();
                    let task = tokio::spawn(async move {
                        if let Ok(server) = TcpStream::connect(upstream).await {
                            pipe(client, server, fault).await;
                        }
                    });
                    if let Ok(mut all) = connections.lock() {
                        all.retain(|c| !c.is_finished());
                        all.push(task.abort_handle());
                    }
                }
            })
            .abort_handle()
        };
        Ok(FaultProxy {
            addr,
            fault,
            connections,
            acceptor,
        })
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Cuts every open connection (new ones are still accepted).
    pub fn cut_all(&self) {
        if let Ok(mut all) = self.connections.lock() {
            for connection in all.drain(..) {
                connection.abort();
            }
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut_all();
    }
}

async fn pipe(client: TcpStream, server: TcpStream, fault: watch::Receiver<Fault>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = forward(client_read, server_write, fault.clone()) => {}
        _ = forward(server_read, client_write, fault) => {}
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut fault: watch::Receiver<Fault>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        loop {
            let current = *fault.borrow_and_update();
            match current {
                Fault::None => break,
                Fault::Latency(delay) => {
                    tokio::time::sleep(delay).await;
                    break;
                }
                Fault::Stall => {
                    if fault.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
