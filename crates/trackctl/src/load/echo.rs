//! `trackctl load echo`: the machine's ceiling for a bare tonic unary call. Serves the gRPC
//! health service (no auth, no database, no middleware) in this process on a free local port,
//! then drives `Health.Check` through the same callers, connections and recorder as the other
//! paths. Nothing to verify beyond every call answering SERVING.

use std::time::Instant;

use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::{Common, Pacer, Recorder, Summary, channels, progress};

#[derive(clap::Args, Debug, Clone)]
pub struct EchoLoad {
    #[command(flatten)]
    pub common: Common,
}

async fn call(mut client: HealthClient<Channel>, recorder: Recorder, mut pacer: Pacer) {
    while let Some(due) = pacer.next().await {
        let result = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        let latency = due.elapsed();
        match result {
            Ok(response) if response.get_ref().status() == ServingStatus::Serving => {
                recorder.record(latency, None);
            }
            Ok(_) => recorder.record(latency, Some("NotServing".to_owned())),
            Err(status) => recorder.record(latency, Some(format!("{:?}", status.code()))),
        }
    }
}

pub async fn run(load: EchoLoad) -> anyhow::Result<Summary> {
    let common = &load.common;
    super::no_timeout(common, "echo")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (_reporter, health) = tonic_health::server::health_reporter();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channels = channels(&format!("http://{addr}"), common.connections).await?;
    let recorder = Recorder::new()?;
    let started = Instant::now();
    let deadline = started + common.duration;
    let ticker = progress(recorder.clone(), started, common.duration);
    let mut tasks = Vec::new();
    for worker in 0..common.concurrency {
        tasks.push(tokio::spawn(call(
            HealthClient::new(channels[worker % channels.len()].clone()),
            recorder.clone(),
            Pacer::new(common.rate, common.concurrency, 1, worker, deadline),
        )));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    server.abort();
    let mut summary = Summary::from("echo (bare tonic unary, Health.Check)", &recorder, elapsed);
    let _ = ticker.await;
    let problems: Vec<String> = (summary.ok == 0)
        .then(|| "no call succeeded".to_owned())
        .into_iter()
        .collect();
    summary.verified_by(&problems, common.allow_errors);
    summary.notes.push(format!(
        "server        in this process at {addr}, {} connections",
        common.connections
    ));
    Ok(summary)
}
