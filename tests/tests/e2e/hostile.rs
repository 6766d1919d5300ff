//! Hostile input over every RPC, from the API's own descriptors (so a new RPC is covered): every
//! numeric and enum field set to -1 is INVALID_ARGUMENT naming a field, and undecodable bytes
//! (invalid UTF-8 in a string, wrong wire types) are INVALID_ARGUMENT naming the request; the
//! services stay up and nothing is written.

use std::time::Duration;

use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType};
use prost_types::field_descriptor_proto::Type;
use suite_tests::{Suite, token};
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tracking_server::Role;

/// A request message given as raw protobuf bytes.
#[derive(Debug, Default, Clone)]
struct Raw(Vec<u8>);

impl Message for Raw {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

struct Rpc {
    path: String,
    /// Client-streaming calls are sent their messages as a stream.
    client_streaming: bool,
    /// Field numbers of the request's numeric and enum fields.
    numbers: Vec<u32>,
}

fn every_rpc() -> Vec<Rpc> {
    let set = prost_types::FileDescriptorSet::decode(tracking_api::FILE_DESCRIPTOR_SET)
        .unwrap_or_else(|e| panic!("descriptor set: {e}"));
    let messages: Vec<(String, prost_types::DescriptorProto)> = set
        .file
        .iter()
        .flat_map(|file| {
            file.message_type
                .iter()
                .map(move |m| (format!(".{}.{}", file.package(), m.name()), m.clone()))
        })
        .collect();
    let mut rpcs = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let input = messages
                    .iter()
                    .find(|(name, _)| name == method.input_type())
                    .map(|(_, m)| m.clone())
                    .unwrap_or_default();
                let numbers = input
                    .field
                    .iter()
                    .filter(|f| {
                        matches!(f.r#type(), Type::Int64 | Type::Int32 | Type::Enum)
                            && f.label() != prost_types::field_descriptor_proto::Label::Repeated
                    })
                    .map(|f| f.number() as u32)
                    .collect();
                rpcs.push(Rpc {
                    path: format!("/{}.{}/{}", file.package(), service.name(), method.name()),
                    client_streaming: method.client_streaming(),
                    numbers,
                });
            }
        }
    }
    rpcs
}

async fn call(suite: &Suite, path: &str, body: Vec<u8>) -> (Code, String) {
    let mut grpc = tonic::client::Grpc::new(suite.server.channel());
    if grpc.ready().await.is_err() {
        return (Code::Unavailable, String::new());
    }
    let mut request = tonic::Request::new(Raw(body));
    request.set_timeout(Duration::from_secs(3));
    if let Ok(value) = format!("Bearer {}", token(1, Role::Service)).parse() {
        request.metadata_mut().insert("authorization", value);
    }
    let codec: tonic_prost::ProstCodec<Raw, Raw> = tonic_prost::ProstCodec::default();
    let path = PathAndQuery::try_from(path.to_owned()).unwrap_or_else(|e| panic!("{e}"));
    match grpc.unary(request, path, codec).await {
        Ok(_) => (Code::Ok, String::new()),
        Err(status) => (status.code(), status.message().to_owned()),
    }
}

/// A client-streaming call sent `messages`: the status it ends with, from the call or from the
/// response stream (bidirectional calls answer as they go).
async fn call_streaming(suite: &Suite, path: &str, messages: Vec<Vec<u8>>) -> (Code, String) {
    let mut grpc = tonic::client::Grpc::new(suite.server.channel());
    if grpc.ready().await.is_err() {
        return (Code::Unavailable, String::new());
    }
    let mut request = tonic::Request::new(tokio_stream::iter(messages.into_iter().map(Raw)));
    request.set_timeout(Duration::from_secs(3));
    if let Ok(value) = format!("Bearer {}", token(1, Role::Service)).parse() {
        request.metadata_mut().insert("authorization", value);
    }
    let codec: tonic_prost::ProstCodec<Raw, Raw> = tonic_prost::ProstCodec::default();
    let path = PathAndQuery::try_from(path.to_owned()).unwrap_or_else(|e| panic!("{e}"));
    let mut responses = match grpc.streaming(request, path, codec).await {
        Ok(response) => response.into_inner(),
        Err(status) => return (status.code(), status.message().to_owned()),
    };
    loop {
        match responses.message().await {
            Ok(Some(_)) => {}
            Ok(None) => return (Code::Ok, String::new()),
            Err(status) => return (status.code(), status.message().to_owned()),
        }
    }
}

async fn rows_written(suite: &Suite) -> i64 {
    suite
        .count(
            "public",
            "select ((select count(*) from gateway.integrations) + (select count(*) from plan.plans)
               + (select count(*) from plan.campaigns) + (select count(*) from mint.codes)
               + (select count(*) from gateway.orders) + (select count(*) from attribution.clicks)
               + (select count(*) from attribution.conversions))::bigint as n",
        )
        .await
}

#[tokio::test]
async fn negative_numbers_and_undecodable_bytes_on_every_rpc() {
    let suite = Suite::start().await;
    let rpcs = every_rpc();
    assert!(rpcs.len() >= 45, "{} RPCs", rpcs.len());
    let mut checked = 0;
    for rpc in rpcs.iter().filter(|r| !r.client_streaming) {
        if !rpc.numbers.is_empty() {
            let mut body = Vec::new();
            for number in &rpc.numbers {
                prost::encoding::encode_key(*number, WireType::Varint, &mut body);
                prost::encoding::encode_varint(-1i64 as u64, &mut body);
            }
            let (code, message) = call(&suite, &rpc.path, body).await;
            assert_eq!(
                code,
                Code::InvalidArgument,
                "{} with -1 everywhere: {message}",
                rpc.path
            );
            let field = message.split(':').next().unwrap_or_default();
            assert!(
                !field.is_empty() && !field.contains(' '),
                "{}: the message names the field first: {message}",
                rpc.path
            );
            checked += 1;
        }
        // Field 1 as a length-delimited value holding invalid UTF-8: for a string it is not
        // UTF-8, for a number or a message it is the wrong wire type or not a message.
        let mut garbage = Vec::new();
        prost::encoding::encode_key(1, WireType::LengthDelimited, &mut garbage);
        garbage.extend_from_slice(&[3, 0xff, 0xfe, 0xfd]);
        let (code, message) = call(&suite, &rpc.path, garbage).await;
        assert_eq!(
            code,
            Code::InvalidArgument,
            "{} with undecodable bytes: {message}",
            rpc.path
        );
        assert!(message.starts_with("request:"), "{message}");
    }
    assert!(checked >= 30, "{checked} RPCs with numeric fields");

    // Client streams: an unparseable message ends the call with INVALID_ARGUMENT naming the
    // request, not INTERNAL.
    let streaming: Vec<&Rpc> = rpcs.iter().filter(|r| r.client_streaming).collect();
    assert!(
        streaming.len() >= 2,
        "{} client-streaming RPCs",
        streaming.len()
    );
    let mut garbage = Vec::new();
    prost::encoding::encode_key(1, WireType::LengthDelimited, &mut garbage);
    garbage.extend_from_slice(&[3, 0xff, 0xfe, 0xfd]);
    for rpc in streaming {
        let (code, message) = call_streaming(&suite, &rpc.path, vec![garbage.clone()]).await;
        assert_eq!(code, Code::InvalidArgument, "{}: {message}", rpc.path);
        assert!(message.starts_with("request:"), "{}: {message}", rpc.path);
    }
    assert_eq!(rows_written(&suite).await, 0, "hostile calls wrote nothing");
    // Still serving.
    let (code, _) = call(
        &suite,
        "/tracking.gateway.v1.ProviderGateway/ListIntegrations",
        Vec::new(),
    )
    .await;
    assert_eq!(code, Code::Ok);
}
