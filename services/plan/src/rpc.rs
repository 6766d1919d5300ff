//! PlanService's gRPC handlers: authorize, convert proto ↔ domain, call the service. Nothing else.

use tonic::{Request, Response, Status};
use tracking_api::plan::v1 as pb;
use tracking_api::plan::v1::plan_service_server::PlanService as PlanRpc;
use tracking_server::Claims;
use tracking_server::paging::Page;
use tracking_server::streams;

use crate::convert::{
    campaign_to_proto, code_trigger_from_proto, plan_to_proto, profile_from_proto,
    roster_entry_to_proto, roster_status_from_proto, terms_from_proto,
};
use crate::domain::plan::PlanField;
use crate::domain::{validate_id, validate_name};
use crate::error::Error;
use crate::events;
use crate::service::{Caller, PlanDraft, PlanService};
use tracking_db::request_keys::RequestKey;

/// The caller of a brand RPC: token verified by the interceptor, creators refused.
fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    let claims = Claims::of(request)?;
    let brand_id = claims.brand_scope()?;
    let bearer = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .trim()
        .to_owned();
    Ok(Caller { brand_id, bearer })
}

/// The call's optional idempotency key, with the digest of the request it came with.
fn request_key(value: &str, request: &impl prost::Message) -> Result<Option<RequestKey>, Error> {
    tracking_server::fields::request_key(value, request)
        .map_err(|message| Error::invalid("request_id", message))
}

/// `0` means "none" for optional id fields.
fn optional_id(field: &str, id: i64) -> Result<Option<i64>, Error> {
    match id {
        0 => Ok(None),
        id => validate_id(field, id).map(Some),
    }
}

/// Most entries one `AddCreators` call takes.
const MAX_BATCH: usize = 500;

type WatchStream = streams::ResponseStream<pb::WatchEventsResponse>;

#[tonic::async_trait]
impl PlanRpc for PlanService {
    async fn create_plan(
        &self,
        request: Request<pb::CreatePlanRequest>,
    ) -> Result<Response<pb::CreatePlanResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        // The plan's fields the call ignores are left out of its digest: a client that sends a
        // plan it read, or sends it again as read back, repeats the same request.
        let mut asked = req.clone();
        if let Some(plan) = asked.plan.as_mut() {
            plan.id = 0;
            plan.provider = 0;
            plan.archived = false;
            plan.locked = false;
            plan.created_at = None;
            plan.updated_at = None;
        }
        let request_id = request_key(&req.request_id, &asked)?;
        let plan = req
            .plan
            .ok_or_else(|| Error::invalid("plan", "is required"))?;
        let draft = PlanDraft {
            name: validate_name("plan.name", &plan.name)?,
            integration_id: validate_id("plan.integration_id", plan.integration_id)?,
            terms: terms_from_proto(&plan)?,
            code_trigger: code_trigger_from_proto(plan.code_trigger)?,
            report_visible: plan.report_visible,
        };
        let plan = self
            .create_plan(&caller, draft, request_id.as_ref())
            .await?;
        Ok(Response::new(pb::CreatePlanResponse {
            plan: Some(plan_to_proto(&plan)),
        }))
    }

    async fn get_plan(
        &self,
        request: Request<pb::GetPlanRequest>,
    ) -> Result<Response<pb::GetPlanResponse>, Status> {
        let caller = caller(&request)?;
        let id = validate_id("plan_id", request.get_ref().plan_id)?;
        let plan = self.get_plan(&caller, id).await?;
        Ok(Response::new(pb::GetPlanResponse {
            plan: Some(plan_to_proto(&plan)),
        }))
    }

    async fn list_plans(
        &self,
        request: Request<pb::ListPlansRequest>,
    ) -> Result<Response<pb::ListPlansResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.get_ref();
        let page = Page::parse(req.page.as_ref())?;
        let rows = self
            .list_plans(
                &caller,
                req.include_archived,
                page.after,
                page.fetch_limit(),
            )
            .await?;
        let (rows, page) = page.finish(rows, |plan| plan.id);
        Ok(Response::new(pb::ListPlansResponse {
            plans: rows.iter().map(plan_to_proto).collect(),
            page: Some(page),
        }))
    }

    async fn update_plan(
        &self,
        request: Request<pb::UpdatePlanRequest>,
    ) -> Result<Response<pb::UpdatePlanResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let plan = req
            .plan
            .ok_or_else(|| Error::invalid("plan", "is required"))?;
        let id = validate_id("plan.id", plan.id)?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid("update_mask", "name at least one field to change").into());
        }
        let mask = paths
            .iter()
            .map(|p| PlanField::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let name = if mask.contains(&PlanField::Name) {
            Some(validate_name("plan.name", &plan.name)?)
        } else {
            None
        };
        let proposed = terms_from_proto(&plan)?;
        let plan = self.update_plan(&caller, id, &mask, name, proposed).await?;
        Ok(Response::new(pb::UpdatePlanResponse {
            plan: Some(plan_to_proto(&plan)),
        }))
    }

    async fn archive_plan(
        &self,
        request: Request<pb::ArchivePlanRequest>,
    ) -> Result<Response<pb::ArchivePlanResponse>, Status> {
        let caller = caller(&request)?;
        let id = validate_id("plan_id", request.get_ref().plan_id)?;
        let plan = self.archive_plan(&caller, id).await?;
        Ok(Response::new(pb::ArchivePlanResponse {
            plan: Some(plan_to_proto(&plan)),
        }))
    }

    async fn create_campaign(
        &self,
        request: Request<pb::CreateCampaignRequest>,
    ) -> Result<Response<pb::CreateCampaignResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let request_id = request_key(&req.request_id, &req)?;
        let name = validate_name("name", &req.name)?;
        let plan_id = optional_id("plan_id", req.plan_id)?;
        let campaign = self
            .create_campaign(
                &caller,
                name,
                plan_id,
                req.allow_shared,
                request_id.as_ref(),
            )
            .await?;
        Ok(Response::new(pb::CreateCampaignResponse {
            campaign: Some(campaign_to_proto(&campaign)),
        }))
    }

    async fn get_campaign(
        &self,
        request: Request<pb::GetCampaignRequest>,
    ) -> Result<Response<pb::GetCampaignResponse>, Status> {
        let caller = caller(&request)?;
        let id = validate_id("campaign_id", request.get_ref().campaign_id)?;
        let campaign = self.get_campaign(&caller, id).await?;
        Ok(Response::new(pb::GetCampaignResponse {
            campaign: Some(campaign_to_proto(&campaign)),
        }))
    }

    async fn list_campaigns(
        &self,
        request: Request<pb::ListCampaignsRequest>,
    ) -> Result<Response<pb::ListCampaignsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.get_ref();
        let page = Page::parse(req.page.as_ref())?;
        let plan_id = optional_id("plan_id", req.plan_id)?;
        let rows = self
            .list_campaigns(
                &caller,
                req.include_archived,
                plan_id,
                page.after,
                page.fetch_limit(),
            )
            .await?;
        let (rows, page) = page.finish(rows, |c| c.id);
        Ok(Response::new(pb::ListCampaignsResponse {
            campaigns: rows.iter().map(campaign_to_proto).collect(),
            page: Some(page),
        }))
    }

    async fn archive_campaign(
        &self,
        request: Request<pb::ArchiveCampaignRequest>,
    ) -> Result<Response<pb::ArchiveCampaignResponse>, Status> {
        let caller = caller(&request)?;
        let id = validate_id("campaign_id", request.get_ref().campaign_id)?;
        let campaign = self.archive_campaign(&caller, id).await?;
        Ok(Response::new(pb::ArchiveCampaignResponse {
            campaign: Some(campaign_to_proto(&campaign)),
        }))
    }

    async fn link_plan(
        &self,
        request: Request<pb::LinkPlanRequest>,
    ) -> Result<Response<pb::LinkPlanResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.get_ref();
        let campaign_id = validate_id("campaign_id", req.campaign_id)?;
        let plan_id = validate_id("plan_id", req.plan_id)?;
        let campaign = self
            .link_plan(&caller, campaign_id, plan_id, req.allow_shared)
            .await?;
        Ok(Response::new(pb::LinkPlanResponse {
            campaign: Some(campaign_to_proto(&campaign)),
        }))
    }

    async fn start_outreach(
        &self,
        request: Request<pb::StartOutreachRequest>,
    ) -> Result<Response<pb::StartOutreachResponse>, Status> {
        let caller = caller(&request)?;
        let id = validate_id("campaign_id", request.get_ref().campaign_id)?;
        let campaign = self.start_outreach(&caller, id).await?;
        Ok(Response::new(pb::StartOutreachResponse {
            campaign: Some(campaign_to_proto(&campaign)),
        }))
    }

    async fn set_code_generation(
        &self,
        request: Request<pb::SetCodeGenerationRequest>,
    ) -> Result<Response<pb::SetCodeGenerationResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.get_ref();
        let id = validate_id("plan_id", req.plan_id)?;
        let trigger = code_trigger_from_proto(req.code_trigger)?
            .ok_or_else(|| Error::invalid("code_trigger", "must be ON_APPROVAL or ON_ADD"))?;
        let plan = self.set_code_generation(&caller, id, trigger).await?;
        Ok(Response::new(pb::SetCodeGenerationResponse {
            plan: Some(plan_to_proto(&plan)),
        }))
    }

    async fn set_report_visibility(
        &self,
        request: Request<pb::SetReportVisibilityRequest>,
    ) -> Result<Response<pb::SetReportVisibilityResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.get_ref();
        let id = validate_id("plan_id", req.plan_id)?;
        let plan = self
            .set_report_visibility(&caller, id, req.report_visible)
            .await?;
        Ok(Response::new(pb::SetReportVisibilityResponse {
            plan: Some(plan_to_proto(&plan)),
        }))
    }

    async fn add_creator(
        &self,
        request: Request<pb::AddCreatorRequest>,
    ) -> Result<Response<pb::AddCreatorResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let request_id = request_key(&req.request_id, &req)?;
        let campaign_id = validate_id("campaign_id", req.campaign_id)?;
        let creator_id = validate_id("creator_id", req.creator_id)?;
        let profile = profile_from_proto(req.profile).validate()?;
        let entry = self
            .add_creator(
                &caller,
                campaign_id,
                creator_id,
                profile,
                req.approved,
                request_id.as_ref(),
            )
            .await?;
        Ok(Response::new(pb::AddCreatorResponse {
            entry: Some(roster_entry_to_proto(&entry)),
        }))
    }

    async fn add_creators(
        &self,
        request: Request<pb::AddCreatorsRequest>,
    ) -> Result<Response<pb::AddCreatorsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let request_id = request_key(&req.request_id, &req)?;
        let campaign_id = validate_id("campaign_id", req.campaign_id)?;
        if req.creators.is_empty() || req.creators.len() > MAX_BATCH {
            return Err(Error::invalid("creators", format!("1..={MAX_BATCH} entries")).into());
        }
        let mut seen = std::collections::HashSet::new();
        let mut creators = Vec::with_capacity(req.creators.len());
        for (i, entry) in req.creators.into_iter().enumerate() {
            let creator_id = validate_id(&format!("creators[{i}].creator_id"), entry.creator_id)?;
            if !seen.insert(creator_id) {
                return Err(Error::invalid(
                    &format!("creators[{i}].creator_id"),
                    format!("creator {creator_id} appears twice"),
                )
                .into());
            }
            let profile =
                profile_from_proto(entry.profile)
                    .validate()
                    .map_err(|err| match err {
                        Error::InvalidArgument { field, message } => {
                            Error::invalid(&format!("creators[{i}].{field}"), message)
                        }
                        other => other,
                    })?;
            creators.push((creator_id, profile, entry.approved));
        }
        let entries = self
            .add_creators(&caller, campaign_id, creators, request_id.as_ref())
            .await?;
        Ok(Response::new(pb::AddCreatorsResponse {
            entries: entries.iter().map(roster_entry_to_proto).collect(),
        }))
    }

    async fn approve_creator(
        &self,
        request: Request<pb::ApproveCreatorRequest>,
    ) -> Result<Response<pb::ApproveCreatorResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.get_ref();
        let campaign_id = validate_id("campaign_id", req.campaign_id)?;
        let creator_id = validate_id("creator_id", req.creator_id)?;
        let entry = self
            .approve_creator(&caller, campaign_id, creator_id)
            .await?;
        Ok(Response::new(pb::ApproveCreatorResponse {
            entry: Some(roster_entry_to_proto(&entry)),
        }))
    }

    async fn remove_creator(
        &self,
        request: Request<pb::RemoveCreatorRequest>,
    ) -> Result<Response<pb::RemoveCreatorResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.get_ref();
        let campaign_id = validate_id("campaign_id", req.campaign_id)?;
        let creator_id = validate_id("creator_id", req.creator_id)?;
        let entry = self
            .remove_creator(&caller, campaign_id, creator_id)
            .await?;
        Ok(Response::new(pb::RemoveCreatorResponse {
            entry: Some(roster_entry_to_proto(&entry)),
        }))
    }

    async fn update_creator_profile(
        &self,
        request: Request<pb::UpdateCreatorProfileRequest>,
    ) -> Result<Response<pb::UpdateCreatorProfileResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let campaign_id = validate_id("campaign_id", req.campaign_id)?;
        let creator_id = validate_id("creator_id", req.creator_id)?;
        let profile = profile_from_proto(req.profile).validate()?;
        let entry = self
            .update_creator_profile(&caller, campaign_id, creator_id, profile)
            .await?;
        Ok(Response::new(pb::UpdateCreatorProfileResponse {
            entry: Some(roster_entry_to_proto(&entry)),
        }))
    }

    async fn list_roster(
        &self,
        request: Request<pb::ListRosterRequest>,
    ) -> Result<Response<pb::ListRosterResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.get_ref();
        let campaign_id = validate_id("campaign_id", req.campaign_id)?;
        let status = roster_status_from_proto(req.status)?;
        let page = Page::parse(req.page.as_ref())?;
        let rows = self
            .list_roster(&caller, campaign_id, status, page.after, page.fetch_limit())
            .await?;
        let (rows, page) = page.finish(rows, |e| e.creator_id);
        Ok(Response::new(pb::ListRosterResponse {
            entries: rows.iter().map(roster_entry_to_proto).collect(),
            page: Some(page),
        }))
    }

    type WatchEventsStream = WatchStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let stream = streams::watch(
            self.log(),
            Claims::of(&request)?,
            request.get_ref().after_seq,
            |stored| {
                Ok(Some(pb::WatchEventsResponse {
                    event: Some(events::decode(stored)?),
                }))
            },
        )?;
        Ok(Response::new(stream))
    }
}
