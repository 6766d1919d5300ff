//! CodeMintService's gRPC handlers: authorize, convert proto ↔ domain, call the service.

use std::pin::Pin;
use std::sync::Arc;

use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracking_api::mint::v1 as pb;
use tracking_api::mint::v1::code_mint_service_server::CodeMintService;
use tracking_server::Claims;
use tracking_server::paging::Page;
use tracking_server::streams;

use crate::convert::{code_to_proto, failure_row_to_proto, failure_to_proto, status_from_proto};
use crate::error::Error;
use crate::events;
use crate::minter::Minted;
use crate::service::MintService;

fn brand<T>(request: &Request<T>) -> Result<i64, Status> {
    Claims::of(request)?.brand_scope()
}

fn id(field: &str, value: i64) -> Result<i64, Error> {
    if value <= 0 {
        return Err(Error::invalid(field, "must be a positive id"));
    }
    Ok(value)
}

/// Mint requests one `MintCodes` stream may have in flight.
const STREAM_IN_FLIGHT: usize = 4096;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl MintService {
    fn minted(&self, minted: &Minted) -> pb::Code {
        code_to_proto(&minted.code, self.public_base_url())
    }
}

#[tonic::async_trait]
impl CodeMintService for MintService {
    async fn mint_code(
        &self,
        request: Request<pb::MintCodeRequest>,
    ) -> Result<Response<pb::MintCodeResponse>, Status> {
        let brand_id = brand(&request)?;
        let req = request.get_ref();
        let key = (
            brand_id,
            id("campaign_id", req.campaign_id)?,
            id("creator_id", req.creator_id)?,
        );
        let minted = self.mint(key).await?;
        Ok(Response::new(pb::MintCodeResponse {
            code: Some(self.minted(&minted)),
            created: minted.created,
        }))
    }

    type MintCodesStream = BoxStream<pb::MintCodesResponse>;

    async fn mint_codes(
        &self,
        request: Request<Streaming<pb::MintCodesRequest>>,
    ) -> Result<Response<Self::MintCodesStream>, Status> {
        let brand_id = brand(&request)?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(1024);
        let service = self.clone();
        let permits = Arc::new(Semaphore::new(STREAM_IN_FLIGHT));
        tokio::spawn(async move {
            // Once the stream has ended for the caller (it went away, or the server ended a
            // stream that sent nothing for too long), no further request is read: nothing would
            // carry its answer. Requests already taken finish (a code minted is kept, and a
            // retry finds it).
            loop {
                let item = tokio::select! {
                    () = tx.closed() => break,
                    item = inbound.next() => item,
                };
                let Some(item) = item else {
                    break;
                };
                let req = match item {
                    Ok(req) => req,
                    Err(status) => {
                        tracing::debug!(%status, "MintCodes client stream ended with an error");
                        // Answers to the messages before it go out first, then the stream ends
                        // with the error (an unparseable message is the caller's INVALID_ARGUMENT).
                        let _all = permits.acquire_many(STREAM_IN_FLIGHT as u32).await;
                        let _ = tx.send(Err(tracking_server::status::inbound(status))).await;
                        break;
                    }
                };
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let service = service.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    // A request whose mint panics is answered INTERNAL, not left unanswered in a
                    // stream that then ends OK.
                    let tag = req.tag.clone();
                    let response = std::panic::AssertUnwindSafe(service.mint_tagged(brand_id, req))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| {
                            tracing::error!(tag, "a MintCodes request's mint panicked");
                            pb::MintCodesResponse {
                                tag,
                                created: false,
                                result: Some(pb::mint_codes_response::Result::Error(
                                    pb::MintError {
                                        grpc_code: tonic::Code::Internal as i32,
                                        message: "internal error".to_owned(),
                                        failure: None,
                                    },
                                )),
                            }
                        });
                    let _ = tx.send(Ok(response)).await;
                    drop(permit);
                });
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_code(
        &self,
        request: Request<pb::GetCodeRequest>,
    ) -> Result<Response<pb::GetCodeResponse>, Status> {
        let brand_id = brand(&request)?;
        let code = self
            .get_code(brand_id, id("code_id", request.get_ref().code_id)?)
            .await?;
        Ok(Response::new(pb::GetCodeResponse {
            code: Some(code_to_proto(&code, self.public_base_url())),
        }))
    }

    async fn list_codes(
        &self,
        request: Request<pb::ListCodesRequest>,
    ) -> Result<Response<pb::ListCodesResponse>, Status> {
        let brand_id = brand(&request)?;
        let req = request.get_ref();
        let campaign_id = id("campaign_id", req.campaign_id)?;
        let creator_id = match req.creator_id {
            0 => None,
            value => Some(id("creator_id", value)?),
        };
        let status = status_from_proto(req.status)?;
        let page = Page::parse(req.page.as_ref())?;
        let rows = self
            .list_codes(
                brand_id,
                campaign_id,
                creator_id,
                status,
                page.after,
                page.fetch_limit(),
            )
            .await?;
        let (rows, page) = page.finish(rows, |code| code.id);
        Ok(Response::new(pb::ListCodesResponse {
            codes: rows
                .iter()
                .map(|code| code_to_proto(code, self.public_base_url()))
                .collect(),
            page: Some(page),
        }))
    }

    async fn resolve_code(
        &self,
        request: Request<pb::ResolveCodeRequest>,
    ) -> Result<Response<pb::ResolveCodeResponse>, Status> {
        let brand_id = brand(&request)?;
        let req = request.get_ref();
        let integration_id = id("integration_id", req.integration_id)?;
        if req.code.trim().is_empty() {
            return Err(Error::invalid("code", "is required").into());
        }
        tracking_server::fields::check_required_text(&req.code, 255)
            .map_err(|message| Error::invalid("code", message))?;
        let code = self.resolve(brand_id, integration_id, &req.code).await?;
        Ok(Response::new(pb::ResolveCodeResponse {
            code: Some(code_to_proto(&code, self.public_base_url())),
        }))
    }

    async fn update_code(
        &self,
        request: Request<pb::UpdateCodeRequest>,
    ) -> Result<Response<pb::UpdateCodeResponse>, Status> {
        let brand_id = brand(&request)?;
        let req = request.get_ref();
        let code = self
            .update_code(brand_id, id("code_id", req.code_id)?, &req.code)
            .await?;
        Ok(Response::new(pb::UpdateCodeResponse {
            code: Some(code_to_proto(&code, self.public_base_url())),
        }))
    }

    async fn disable_code(
        &self,
        request: Request<pb::DisableCodeRequest>,
    ) -> Result<Response<pb::DisableCodeResponse>, Status> {
        let brand_id = brand(&request)?;
        let code = self
            .disable_code(brand_id, id("code_id", request.get_ref().code_id)?)
            .await?;
        Ok(Response::new(pb::DisableCodeResponse {
            code: Some(code_to_proto(&code, self.public_base_url())),
        }))
    }

    async fn retry_code(
        &self,
        request: Request<pb::RetryCodeRequest>,
    ) -> Result<Response<pb::RetryCodeResponse>, Status> {
        let brand_id = brand(&request)?;
        let req = request.get_ref();
        let key = (
            brand_id,
            id("campaign_id", req.campaign_id)?,
            id("creator_id", req.creator_id)?,
        );
        let minted = self.retry(key).await?;
        Ok(Response::new(pb::RetryCodeResponse {
            code: Some(self.minted(&minted)),
        }))
    }

    async fn retry_failed(
        &self,
        request: Request<pb::RetryFailedRequest>,
    ) -> Result<Response<pb::RetryFailedResponse>, Status> {
        let brand_id = brand(&request)?;
        let campaign_id = id("campaign_id", request.get_ref().campaign_id)?;
        let (retried, minted) = self.retry_failed(brand_id, campaign_id).await?;
        Ok(Response::new(pb::RetryFailedResponse {
            retried: i32::try_from(retried).unwrap_or(i32::MAX),
            minted: i32::try_from(minted).unwrap_or(i32::MAX),
        }))
    }

    async fn list_failures(
        &self,
        request: Request<pb::ListFailuresRequest>,
    ) -> Result<Response<pb::ListFailuresResponse>, Status> {
        let brand_id = brand(&request)?;
        let req = request.get_ref();
        let campaign_id = id("campaign_id", req.campaign_id)?;
        let page = Page::parse(req.page.as_ref())?;
        let rows = self
            .list_failures(brand_id, campaign_id, page.after, page.fetch_limit())
            .await?;
        let (rows, page) = page.finish(rows, |row| row.creator_id);
        Ok(Response::new(pb::ListFailuresResponse {
            failures: rows.iter().map(failure_row_to_proto).collect(),
            page: Some(page),
        }))
    }

    async fn preview_codes(
        &self,
        request: Request<pb::PreviewCodesRequest>,
    ) -> Result<Response<pb::PreviewCodesResponse>, Status> {
        let brand_id = brand(&request)?;
        let req = request.get_ref();
        let campaign_id = id("campaign_id", req.campaign_id)?;
        let pattern = (!req.pattern.trim().is_empty()).then_some(req.pattern.trim());
        let page = Page::parse(req.page.as_ref())?;
        let previews = self
            .preview(
                brand_id,
                campaign_id,
                pattern,
                page.after,
                page.fetch_limit(),
            )
            .await?;
        let (previews, page) = page.finish(previews, |p| p.creator_id);
        Ok(Response::new(pb::PreviewCodesResponse {
            previews: previews
                .into_iter()
                .map(|p| pb::CodePreview {
                    creator_id: p.creator_id,
                    result: Some(match p.result {
                        Ok(code) => pb::code_preview::Result::Code(code),
                        Err(failure) => pb::code_preview::Result::Failure(failure_to_proto(
                            (brand_id, campaign_id, p.creator_id),
                            &failure,
                            0,
                        )),
                    }),
                    collides: p.collides,
                })
                .collect(),
            page: Some(page),
        }))
    }

    type WatchCodesStream = BoxStream<pb::WatchCodesResponse>;

    async fn watch_codes(
        &self,
        request: Request<pb::WatchCodesRequest>,
    ) -> Result<Response<Self::WatchCodesStream>, Status> {
        let stream = streams::watch(
            &self.log,
            Claims::of(&request)?,
            request.get_ref().after_seq,
            |stored| {
                Ok(Some(pb::WatchCodesResponse {
                    event: Some(events::decode(stored)?),
                }))
            },
        )?;
        Ok(Response::new(stream))
    }
}

impl MintService {
    /// One request of a `MintCodes` stream, answered in the stream (never failing the stream).
    async fn mint_tagged(&self, brand_id: i64, req: pb::MintCodesRequest) -> pb::MintCodesResponse {
        let tag = req.tag;
        let result = if tag.chars().count() > 100 {
            Err(Error::invalid("tag", "at most 100 characters"))
        } else {
            match (
                id("campaign_id", req.campaign_id),
                id("creator_id", req.creator_id),
            ) {
                (Ok(campaign_id), Ok(creator_id)) => {
                    self.minter.mint((brand_id, campaign_id, creator_id)).await
                }
                (Err(err), _) | (_, Err(err)) => Err(err),
            }
        };
        match result {
            Ok(minted) => pb::MintCodesResponse {
                tag,
                created: minted.created,
                result: Some(pb::mint_codes_response::Result::Code(self.minted(&minted))),
            },
            Err(err) => {
                let failure = match &err {
                    Error::MintFailed(failure) => {
                        let key = (brand_id, req.campaign_id, req.creator_id);
                        // As ListFailures tells it (its attempts and time), once recorded.
                        Some(match self.failure_of(key).await {
                            Ok(Some(row)) => failure_row_to_proto(&row),
                            _ => failure_to_proto(key, failure, 1),
                        })
                    }
                    _ => None,
                };
                let status = Status::from(err);
                pb::MintCodesResponse {
                    tag,
                    created: false,
                    result: Some(pb::mint_codes_response::Result::Error(pb::MintError {
                        grpc_code: status.code() as i32,
                        message: status.message().to_owned(),
                        failure,
                    })),
                }
            }
        }
    }
}
