//! PlanService's use cases, free of tonic: each loads what its rule needs, applies the rule from
//! `domain`, writes through `store` and appends its events, all in one transaction.

use std::collections::HashMap;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use tracking_api::plan::v1::EventKind;
use tracking_clients::GatewayClient;
use tracking_db::request_keys::{self, Claim, Created, RequestKey};
use tracking_db::{Database, DbError};
use tracking_events::{EventLog, NewEvent, append};

use crate::domain::campaign::{Campaign, check_link, check_start_outreach};
use crate::domain::plan::{CodeTrigger, Plan, PlanField, Terms};
use crate::domain::roster::{Profile, RosterEntry, RosterStatus};
use crate::error::Error;
use crate::events;
use crate::store::{Lock, campaigns, plans, roster};

/// Who is calling: the brand every query is scoped to, and the token forwarded to the gateway.
#[derive(Clone, Debug)]
pub struct Caller {
    pub brand_id: i64,
    pub bearer: String,
}

/// What a brand asks for when creating a plan.
#[derive(Clone, Debug)]
pub struct PlanDraft {
    pub name: String,
    pub integration_id: i64,
    pub terms: Terms,
    pub code_trigger: Option<CodeTrigger>,
    pub report_visible: bool,
}

#[derive(Clone, Debug)]
pub struct PlanService {
    db: Database,
    gateway: GatewayClient,
    log: EventLog,
}

fn plan_not_found(id: i64) -> Error {
    Error::NotFound(format!("plan {id} not found"))
}

fn campaign_not_found(id: i64) -> Error {
    Error::NotFound(format!("campaign {id} not found"))
}

fn not_on_roster(campaign_id: i64, creator_id: i64) -> Error {
    Error::NotFound(format!(
        "creator {creator_id} is not on campaign {campaign_id}'s roster"
    ))
}

/// Maps the unique index on active plan names to ALREADY_EXISTS.
fn name_taken(name: &str) -> impl FnOnce(Error) -> Error + '_ {
    move |err| match err {
        Error::Db(DbError::UniqueViolation { constraint }) if constraint == "plans_brand_name" => {
            Error::AlreadyExists(format!("a plan named {name:?} already exists"))
        }
        other => other,
    }
}

async fn must_plan(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    id: i64,
    lock: Lock,
) -> Result<Plan, Error> {
    plans::get(conn, brand_id, id, lock)
        .await?
        .ok_or_else(|| plan_not_found(id))
}

async fn must_campaign(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    id: i64,
    lock: Lock,
) -> Result<Campaign, Error> {
    campaigns::get(conn, brand_id, id, lock)
        .await?
        .ok_or_else(|| campaign_not_found(id))
}

async fn must_entry(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    campaign_id: i64,
    creator_id: i64,
    lock: Lock,
) -> Result<RosterEntry, Error> {
    roster::get(conn, brand_id, campaign_id, creator_id, lock)
        .await?
        .ok_or_else(|| not_on_roster(campaign_id, creator_id))
}

/// Another call linked the campaign to another plan while this one waited for the plans' locks:
/// a race, not a broken rule, so the call may simply be made again (UNAVAILABLE, as minting
/// answers its own relink race).
fn changed_meanwhile(campaign_id: i64) -> Error {
    Error::Unavailable(format!(
        "campaign {campaign_id} changed its plan meanwhile; retry"
    ))
}

/// Links `plan_id` to the campaign (rules in `check_link`) and returns the events: the campaign
/// itself, and every campaign whose shared-plan warning changed with it.
async fn link(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    campaign_id: i64,
    plan_id: i64,
    allow_shared: bool,
) -> Result<Vec<NewEvent>, Error> {
    // Lock order everywhere: plans (by id), then campaigns (the one linked, then the others by
    // id). The plan left is locked as well as the plan linked, so every change to who shares a
    // plan goes through that plan's lock; the campaigns whose events this writes are locked
    // before they are read, so no change to them (an archive) commits between the read and this
    // transaction, to be announced before a stale copy of them.
    let before = must_campaign(conn, brand_id, campaign_id, Lock::None).await?;
    let mut plan_ids: Vec<i64> = before.plan_id.into_iter().chain([plan_id]).collect();
    plan_ids.sort_unstable();
    plan_ids.dedup();
    let mut plan = None;
    for id in plan_ids {
        let locked = must_plan(conn, brand_id, id, Lock::ForUpdate).await?;
        if id == plan_id {
            plan = Some(locked);
        }
    }
    let plan = plan.ok_or_else(|| plan_not_found(plan_id))?;
    let campaign = must_campaign(conn, brand_id, campaign_id, Lock::ForUpdate).await?;
    // Linked already (by this call's own retry or a double submit, meanwhile too): done.
    if campaign.plan_id == Some(plan_id) {
        return Ok(Vec::new());
    }
    if campaign.plan_id != before.plan_id {
        return Err(changed_meanwhile(campaign_id));
    }
    let others: Vec<i64> = campaigns::using_plan(conn, brand_id, plan_id, Lock::ForUpdate)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    check_link(&campaign, &plan, &others, allow_shared)?;
    campaigns::set_plan(conn, brand_id, campaign_id, plan_id).await?;

    let mut touched = vec![campaign_id];
    touched.extend(others);
    if let Some(old_plan) = campaign.plan_id {
        touched.extend(
            campaigns::using_plan(conn, brand_id, old_plan, Lock::ForUpdate)
                .await?
                .into_iter()
                .map(|c| c.id),
        );
    }
    let mut out = Vec::with_capacity(touched.len());
    for id in touched {
        let campaign = must_campaign(conn, brand_id, id, Lock::None).await?;
        out.push(events::campaign(EventKind::CampaignPlanLinked, &campaign));
    }
    Ok(out)
}

/// Adds (or restores) creators on an active campaign, in the caller's transaction, each creator
/// once (the RPC refuses repeats): the same add again changes nothing (no event); a different add
/// of a creator already on the roster is ALREADY_EXISTS, also when another call added the creator
/// meanwhile. The whole list costs one read and one write. Entries and events in input order.
async fn add_entries(
    conn: &mut AsyncPgConnection,
    campaign: &Campaign,
    creators: &[(i64, Profile, bool)],
) -> Result<(Vec<RosterEntry>, Vec<NewEvent>), Error> {
    let (brand_id, campaign_id) = (campaign.brand_id, campaign.id);
    let ids: Vec<i64> = creators.iter().map(|c| c.0).collect();
    let mut entries: HashMap<i64, RosterEntry> =
        roster::get_many(conn, brand_id, campaign_id, &ids)
            .await?
            .into_iter()
            .map(|entry| (entry.creator_id, entry))
            .collect();
    let mut writes = Vec::new();
    for (creator_id, profile, approved) in creators {
        if let Some(entry) = entries.get(creator_id)
            && entry.status != RosterStatus::Removed
        {
            entry.check_add_again(profile, *approved)?;
            continue;
        }
        let status = if *approved {
            RosterStatus::Approved
        } else {
            RosterStatus::Added
        };
        writes.push((*creator_id, profile, status));
    }
    if !writes.is_empty() {
        let written = roster::upsert_many(conn, brand_id, campaign_id, &writes).await?;
        let written: HashMap<i64, RosterEntry> = written
            .into_iter()
            .map(|entry| (entry.creator_id, entry))
            .collect();
        // Creators another call added after the read above: their adds are checked as above.
        let raced: Vec<i64> = writes
            .iter()
            .map(|w| w.0)
            .filter(|id| !written.contains_key(id))
            .collect();
        if !raced.is_empty() {
            for entry in roster::get_many(conn, brand_id, campaign_id, &raced).await? {
                if let Some((_, profile, approved)) =
                    creators.iter().find(|c| c.0 == entry.creator_id)
                {
                    entry.check_add_again(profile, *approved)?;
                }
                entries.insert(entry.creator_id, entry);
            }
        }
        writes.retain(|w| written.contains_key(&w.0));
        entries.extend(written);
    }
    let events = writes
        .iter()
        .filter_map(|(id, ..)| entries.get(id))
        .map(|entry| events::roster(EventKind::CreatorAdded, entry))
        .collect();
    let entries = ids
        .iter()
        .map(|id| {
            entries
                .remove(id)
                .ok_or_else(|| not_on_roster(campaign_id, *id))
        })
        .collect::<Result<_, _>>()?;
    Ok((entries, events))
}

impl PlanService {
    pub fn new(db: Database, gateway: GatewayClient, log: EventLog) -> Self {
        Self { db, gateway, log }
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    async fn conn(&self) -> Result<tracking_db::Conn, Error> {
        Ok(self.db.conn().await?)
    }

    // ---- plans -------------------------------------------------------------------------------

    #[tracing::instrument(skip_all, fields(brand_id = caller.brand_id))]
    pub async fn create_plan(
        &self,
        caller: &Caller,
        draft: PlanDraft,
        request_id: Option<&RequestKey>,
    ) -> Result<Plan, Error> {
        // A retry answers the plan it created, even while the gateway is down.
        if let Some(rid) = request_id {
            let mut conn = self.conn().await?;
            if let Some(created) =
                request_keys::created(&mut conn, caller.brand_id, "CreatePlan", rid).await?
            {
                return must_plan(&mut conn, caller.brand_id, created.id, Lock::None).await;
            }
        }
        let facts = self
            .gateway
            .integration_facts(
                &caller.bearer,
                draft.integration_id,
                draft.terms.has_new_store_amounts(None),
            )
            .await?;
        let caps = facts.capabilities;
        draft.terms.validate(&caps)?;
        if let Some(currency) = &facts.store_currency {
            draft.terms.validate_store_currency(currency, None)?;
        }
        let provider = tracking_api::common::v1::Provider::try_from(caps.provider)
            .map_err(|_| Error::Internal("gateway sent an unknown provider".to_owned()))?;
        let brand_id = caller.brand_id;
        let mut conn = self.conn().await?;
        let plan = conn
            .transaction::<_, Error, _>(async |conn| {
                if let Some(rid) = request_id
                    && let Claim::Existing(created) =
                        request_keys::claim(conn, brand_id, "CreatePlan", rid).await?
                {
                    return must_plan(conn, brand_id, created.id, Lock::None).await;
                }
                let id = plans::insert(
                    conn,
                    &plans::NewPlan {
                        brand_id,
                        name: &draft.name,
                        integration_id: draft.integration_id,
                        provider,
                        terms: &draft.terms,
                        code_trigger: draft.code_trigger.unwrap_or(CodeTrigger::OnApproval),
                        report_visible: draft.report_visible,
                    },
                )
                .await?;
                if let Some(rid) = request_id {
                    let created = Created { id, scope: None };
                    request_keys::complete(conn, brand_id, "CreatePlan", rid, created).await?;
                }
                let plan = must_plan(conn, brand_id, id, Lock::None).await?;
                append(conn, &[events::plan(EventKind::PlanCreated, &plan)]).await?;
                Ok(plan)
            })
            .await
            .map_err(name_taken(&draft.name))?;
        tracing::info!(plan_id = plan.id, "plan created");
        Ok(plan)
    }

    pub async fn get_plan(&self, caller: &Caller, id: i64) -> Result<Plan, Error> {
        let mut conn = self.conn().await?;
        must_plan(&mut conn, caller.brand_id, id, Lock::None).await
    }

    pub async fn list_plans(
        &self,
        caller: &Caller,
        include_archived: bool,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Plan>, Error> {
        let mut conn = self.conn().await?;
        plans::list(&mut conn, caller.brand_id, include_archived, before, limit).await
    }

    /// Applies the `mask` fields of `proposed` (and `name`) to the plan, revalidated as a whole
    /// against its provider.
    #[tracing::instrument(skip_all, fields(brand_id = caller.brand_id, plan_id = id))]
    pub async fn update_plan(
        &self,
        caller: &Caller,
        id: i64,
        mask: &[PlanField],
        name: Option<String>,
        proposed: Terms,
    ) -> Result<Plan, Error> {
        let brand_id = caller.brand_id;
        let current = self.get_plan(caller, id).await?;
        current.ensure_editable()?;
        // The store is asked only for amounts the update gives it anew (as checked below).
        let mut after = current.terms.clone();
        for field in mask {
            field.apply(&mut after, &proposed);
        }
        let ask_store_currency = after.has_new_store_amounts(Some(&current.terms));
        let facts = self
            .gateway
            .integration_facts(&caller.bearer, current.integration_id, ask_store_currency)
            .await?;
        let (caps, store_currency) = (facts.capabilities, facts.store_currency);
        let mut conn = self.conn().await?;
        let name_for_error = name.clone().unwrap_or_default();
        let plan = conn
            .transaction::<_, Error, _>(async |conn| {
                let plan = must_plan(conn, brand_id, id, Lock::ForUpdate).await?;
                plan.ensure_editable()?;
                let mut terms = plan.terms.clone();
                for field in mask {
                    field.apply(&mut terms, &proposed);
                }
                terms.validate_change(&caps, &plan.terms)?;
                // The store was asked (or not) for the plan as read before: changed since so that
                // this update gives the store an amount anew, it is checked against nothing.
                // A race with another update, not a rule: retryable, as `changed_meanwhile`.
                if !ask_store_currency && terms.has_new_store_amounts(Some(&plan.terms)) {
                    return Err(Error::Unavailable(format!(
                        "plan {id} changed meanwhile; retry"
                    )));
                }
                if let Some(currency) = &store_currency {
                    terms.validate_store_currency(currency, Some(&plan.terms))?;
                }
                let new_name = name.unwrap_or_else(|| plan.name.clone());
                if new_name == plan.name && terms == plan.terms {
                    return Ok(plan);
                }
                plans::update_terms(conn, brand_id, id, &new_name, &terms).await?;
                let plan = must_plan(conn, brand_id, id, Lock::None).await?;
                append(conn, &[events::plan(EventKind::PlanUpdated, &plan)]).await?;
                Ok(plan)
            })
            .await
            .map_err(name_taken(&name_for_error))?;
        Ok(plan)
    }

    #[tracing::instrument(skip_all, fields(brand_id = caller.brand_id, plan_id = id))]
    pub async fn archive_plan(&self, caller: &Caller, id: i64) -> Result<Plan, Error> {
        let brand_id = caller.brand_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            let plan = must_plan(conn, brand_id, id, Lock::ForUpdate).await?;
            if plan.archived_at.is_some() {
                return Ok(plan);
            }
            let active: Vec<String> = campaigns::using_plan(conn, brand_id, id, Lock::None)
                .await?
                .into_iter()
                .filter(|c| c.archived_at.is_none())
                .map(|c| c.id.to_string())
                .collect();
            if !active.is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "plan {id} is used by active campaign(s) {}; archive them or link another plan first",
                    active.join(", ")
                )));
            }
            plans::archive(conn, brand_id, id).await?;
            let plan = must_plan(conn, brand_id, id, Lock::None).await?;
            append(conn, &[events::plan(EventKind::PlanArchived, &plan)]).await?;
            Ok(plan)
        })
        .await
    }

    /// Settings change at any time, outreach or not.
    async fn change_settings(
        &self,
        caller: &Caller,
        id: i64,
        kind: EventKind,
        change: impl FnOnce(&Plan) -> Result<(CodeTrigger, bool), Error> + Send,
    ) -> Result<Plan, Error> {
        let brand_id = caller.brand_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            let plan = must_plan(conn, brand_id, id, Lock::ForUpdate).await?;
            let (trigger, visible) = change(&plan)?;
            if trigger == plan.code_trigger && visible == plan.report_visible {
                return Ok(plan);
            }
            plans::set_settings(conn, brand_id, id, trigger, visible).await?;
            let plan = must_plan(conn, brand_id, id, Lock::None).await?;
            append(conn, &[events::plan(kind, &plan)]).await?;
            Ok(plan)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(brand_id = caller.brand_id, plan_id = id))]
    pub async fn set_code_generation(
        &self,
        caller: &Caller,
        id: i64,
        trigger: CodeTrigger,
    ) -> Result<Plan, Error> {
        self.change_settings(caller, id, EventKind::CodeTriggerChanged, |plan| {
            // The trigger it has already is no change (a retry after the archive included).
            if plan.archived_at.is_some() && plan.code_trigger != trigger {
                return Err(Error::FailedPrecondition(format!(
                    "plan {id} is archived: no codes are generated for it"
                )));
            }
            Ok((trigger, plan.report_visible))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(brand_id = caller.brand_id, plan_id = id))]
    pub async fn set_report_visibility(
        &self,
        caller: &Caller,
        id: i64,
        visible: bool,
    ) -> Result<Plan, Error> {
        self.change_settings(caller, id, EventKind::ReportVisibilityChanged, |plan| {
            Ok((plan.code_trigger, visible))
        })
        .await
    }

    // ---- campaigns ---------------------------------------------------------------------------

    #[tracing::instrument(skip_all, fields(brand_id = caller.brand_id))]
    pub async fn create_campaign(
        &self,
        caller: &Caller,
        name: String,
        plan_id: Option<i64>,
        allow_shared: bool,
        request_id: Option<&RequestKey>,
    ) -> Result<Campaign, Error> {
        let brand_id = caller.brand_id;
        let mut conn = self.conn().await?;
        let campaign = conn
            .transaction::<_, Error, _>(async |conn| {
                if let Some(rid) = request_id
                    && let Claim::Existing(created) =
                        request_keys::claim(conn, brand_id, "CreateCampaign", rid).await?
                {
                    return must_campaign(conn, brand_id, created.id, Lock::None).await;
                }
                let id = campaigns::insert(conn, brand_id, &name).await?;
                let mut out = Vec::new();
                let created = must_campaign(conn, brand_id, id, Lock::None).await?;
                out.push(events::campaign(EventKind::CampaignCreated, &created));
                if let Some(plan_id) = plan_id {
                    out.extend(link(conn, brand_id, id, plan_id, allow_shared).await?);
                }
                if let Some(rid) = request_id {
                    let created = Created { id, scope: None };
                    request_keys::complete(conn, brand_id, "CreateCampaign", rid, created).await?;
                }
                append(conn, &out).await?;
                must_campaign(conn, brand_id, id, Lock::None).await
            })
            .await?;
        tracing::info!(campaign_id = campaign.id, "campaign created");
        Ok(campaign)
    }

    pub async fn get_campaign(&self, caller: &Caller, id: i64) -> Result<Campaign, Error> {
        let mut conn = self.conn().await?;
        must_campaign(&mut conn, caller.brand_id, id, Lock::None).await
    }

    pub async fn list_campaigns(
        &self,
        caller: &Caller,
        include_archived: bool,
        plan_id: Option<i64>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Campaign>, Error> {
        let mut conn = self.conn().await?;
        campaigns::list(
            &mut conn,
            caller.brand_id,
            include_archived,
            plan_id,
            before,
            limit,
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(brand_id = caller.brand_id, campaign_id, plan_id))]
    pub async fn link_plan(
        &self,
        caller: &Caller,
        campaign_id: i64,
        plan_id: i64,
        allow_shared: bool,
    ) -> Result<Campaign, Error> {
        let brand_id = caller.brand_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            let out = link(conn, brand_id, campaign_id, plan_id, allow_shared).await?;
            append(conn, &out).await?;
            must_campaign(conn, brand_id, campaign_id, Lock::None).await
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(brand_id = caller.brand_id, campaign_id = id))]
    pub async fn start_outreach(&self, caller: &Caller, id: i64) -> Result<Campaign, Error> {
        let brand_id = caller.brand_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            let campaign = must_campaign(conn, brand_id, id, Lock::None).await?;
            // Started already (archived since, or not): a retry answers as the first call did.
            if campaign.outreach_started_at.is_some() {
                return Ok(campaign);
            }
            check_start_outreach(&campaign)?;
            let plan_id = campaign.plan_id.unwrap_or_default();
            // The plan lock serializes this with UpdatePlan, so no edit slips past the lock.
            let plan = must_plan(conn, brand_id, plan_id, Lock::ForUpdate).await?;
            let campaign = must_campaign(conn, brand_id, id, Lock::ForUpdate).await?;
            if campaign.outreach_started_at.is_some() {
                return Ok(campaign);
            }
            // Archived meanwhile: refused as it would have been had the archive come first.
            check_start_outreach(&campaign)?;
            if campaign.plan_id != Some(plan_id) {
                return Err(changed_meanwhile(id));
            }
            campaigns::start_outreach(conn, brand_id, id).await?;
            let campaign = must_campaign(conn, brand_id, id, Lock::None).await?;
            let mut out = vec![events::campaign(
                EventKind::CampaignOutreachStarted,
                &campaign,
            )];
            if !plan.locked {
                let plan = must_plan(conn, brand_id, plan_id, Lock::None).await?;
                out.push(events::plan(EventKind::PlanUpdated, &plan));
            }
            append(conn, &out).await?;
            tracing::info!(campaign_id = id, plan_id, "outreach started, plan locked");
            Ok(campaign)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(brand_id = caller.brand_id, campaign_id = id))]
    pub async fn archive_campaign(&self, caller: &Caller, id: i64) -> Result<Campaign, Error> {
        let brand_id = caller.brand_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            let campaign = must_campaign(conn, brand_id, id, Lock::ForUpdate).await?;
            if campaign.archived_at.is_some() {
                return Ok(campaign);
            }
            campaigns::archive(conn, brand_id, id).await?;
            let campaign = must_campaign(conn, brand_id, id, Lock::None).await?;
            append(
                conn,
                &[events::campaign(EventKind::CampaignArchived, &campaign)],
            )
            .await?;
            Ok(campaign)
        })
        .await
    }

    // ---- roster ------------------------------------------------------------------------------

    #[tracing::instrument(skip_all, fields(brand_id = caller.brand_id, campaign_id, creator_id))]
    pub async fn add_creator(
        &self,
        caller: &Caller,
        campaign_id: i64,
        creator_id: i64,
        profile: Profile,
        approved: bool,
        request_id: Option<&RequestKey>,
    ) -> Result<RosterEntry, Error> {
        let brand_id = caller.brand_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            if let Some(rid) = request_id
                && let Claim::Existing(created) =
                    request_keys::claim(conn, brand_id, "AddCreator", rid).await?
            {
                // The entry the request added (a key kept before requests were fingerprinted
                // answers it also for another request: another campaign, or none).
                let campaign = created.scope.unwrap_or(campaign_id);
                return must_entry(conn, brand_id, campaign, created.id, Lock::None).await;
            }
            let campaign = must_campaign(conn, brand_id, campaign_id, Lock::ForShare).await?;
            campaign.ensure_active()?;
            let (entries, events) =
                add_entries(conn, &campaign, &[(creator_id, profile, approved)]).await?;
            if let Some(rid) = request_id {
                let created = Created {
                    id: creator_id,
                    scope: Some(campaign_id),
                };
                request_keys::complete(conn, brand_id, "AddCreator", rid, created).await?;
            }
            append(conn, &events).await?;
            entries
                .into_iter()
                .next()
                .ok_or_else(|| not_on_roster(campaign_id, creator_id))
        })
        .await
    }

    /// Many `add_creator`s in one transaction: all or none. A retry under the same request id
    /// changes nothing and answers the creators' entries as they are now: without it, a retry of
    /// a batch that went through would restore a creator removed since.
    #[tracing::instrument(skip_all, fields(brand_id = caller.brand_id, campaign_id, count = creators.len()))]
    pub async fn add_creators(
        &self,
        caller: &Caller,
        campaign_id: i64,
        creators: Vec<(i64, Profile, bool)>,
        request_id: Option<&RequestKey>,
    ) -> Result<Vec<RosterEntry>, Error> {
        let brand_id = caller.brand_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            if let Some(rid) = request_id
                && let Claim::Existing(created) =
                    request_keys::claim(conn, brand_id, "AddCreators", rid).await?
            {
                let campaign = created.scope.unwrap_or(campaign_id);
                let ids: Vec<i64> = creators.iter().map(|(id, _, _)| *id).collect();
                let mut found: HashMap<i64, RosterEntry> =
                    roster::get_many(conn, brand_id, campaign, &ids)
                        .await?
                        .into_iter()
                        .map(|entry| (entry.creator_id, entry))
                        .collect();
                return ids
                    .iter()
                    .map(|id| found.remove(id).ok_or_else(|| not_on_roster(campaign, *id)))
                    .collect();
            }
            let campaign = must_campaign(conn, brand_id, campaign_id, Lock::ForShare).await?;
            campaign.ensure_active()?;
            let (entries, events) = add_entries(conn, &campaign, &creators).await?;
            if let Some(rid) = request_id {
                let created = Created {
                    id: campaign_id,
                    scope: Some(campaign_id),
                };
                request_keys::complete(conn, brand_id, "AddCreators", rid, created).await?;
            }
            append(conn, &events).await?;
            Ok(entries)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(brand_id = caller.brand_id, campaign_id, creator_id))]
    pub async fn approve_creator(
        &self,
        caller: &Caller,
        campaign_id: i64,
        creator_id: i64,
    ) -> Result<RosterEntry, Error> {
        let brand_id = caller.brand_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            let campaign = must_campaign(conn, brand_id, campaign_id, Lock::None).await?;
            let entry =
                must_entry(conn, brand_id, campaign_id, creator_id, Lock::ForUpdate).await?;
            entry.ensure_on_roster()?;
            if entry.status == RosterStatus::Approved {
                return Ok(entry);
            }
            campaign.ensure_active()?;
            roster::set_status(
                conn,
                brand_id,
                campaign_id,
                creator_id,
                RosterStatus::Approved,
            )
            .await?;
            let entry = must_entry(conn, brand_id, campaign_id, creator_id, Lock::None).await?;
            append(conn, &[events::roster(EventKind::CreatorApproved, &entry)]).await?;
            Ok(entry)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(brand_id = caller.brand_id, campaign_id, creator_id))]
    pub async fn remove_creator(
        &self,
        caller: &Caller,
        campaign_id: i64,
        creator_id: i64,
    ) -> Result<RosterEntry, Error> {
        let brand_id = caller.brand_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            let entry =
                must_entry(conn, brand_id, campaign_id, creator_id, Lock::ForUpdate).await?;
            if entry.status == RosterStatus::Removed {
                return Ok(entry);
            }
            roster::set_status(
                conn,
                brand_id,
                campaign_id,
                creator_id,
                RosterStatus::Removed,
            )
            .await?;
            let entry = must_entry(conn, brand_id, campaign_id, creator_id, Lock::None).await?;
            append(conn, &[events::roster(EventKind::CreatorRemoved, &entry)]).await?;
            Ok(entry)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(brand_id = caller.brand_id, campaign_id, creator_id))]
    pub async fn update_creator_profile(
        &self,
        caller: &Caller,
        campaign_id: i64,
        creator_id: i64,
        profile: Profile,
    ) -> Result<RosterEntry, Error> {
        let brand_id = caller.brand_id;
        let mut conn = self.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            let entry =
                must_entry(conn, brand_id, campaign_id, creator_id, Lock::ForUpdate).await?;
            entry.ensure_on_roster()?;
            if entry.profile == profile {
                return Ok(entry);
            }
            roster::set_profile(conn, brand_id, campaign_id, creator_id, &profile).await?;
            let entry = must_entry(conn, brand_id, campaign_id, creator_id, Lock::None).await?;
            append(
                conn,
                &[events::roster(EventKind::CreatorProfileUpdated, &entry)],
            )
            .await?;
            Ok(entry)
        })
        .await
    }

    pub async fn list_roster(
        &self,
        caller: &Caller,
        campaign_id: i64,
        status: Option<RosterStatus>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<RosterEntry>, Error> {
        let mut conn = self.conn().await?;
        must_campaign(&mut conn, caller.brand_id, campaign_id, Lock::None).await?;
        roster::list(
            &mut conn,
            caller.brand_id,
            campaign_id,
            status,
            after,
            limit,
        )
        .await
    }
}
