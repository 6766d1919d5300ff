//! One suite process for the multi-process tests (replicas, crashes): the whole suite on
//! `DATABASE_URL` with the test kit's secrets, on loopback ports chosen by the OS. Prints
//! `READY <grpc-addr> <http-addr>` once listening and runs until SIGTERM (or SIGKILL).

use std::io::Write;

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL is required")?;
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
    let shutdown = tracking_server::shutdown::on_signal();
    let config = suite_tests::config(&url);
    let suite = trackd::Suite::prepare(&config, shutdown.clone()).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "READY {grpc_addr} {http_addr}")?;
    stdout.flush()?;
    suite.serve(grpc, http, shutdown).await
}
