//! Applying PlanService's events: the projection of plans, campaigns and rosters, and what each
//! change means for codes (the triggers): queue creators to mint, backfill on a trigger switch,
//! disable a removed creator's code, retry a failure a profile fix may have solved. Runs inside
//! the stream consumer's transaction, so each event is applied exactly once.

use std::collections::HashMap;

use diesel_async::AsyncPgConnection;
use tracking_api::common::v1::Provider;
use tracking_api::mint::v1::CodeEventKind;
use tracking_api::plan::v1::{EventKind, PlanEvent, RosterEntry, plan_event::Subject};
use tracking_db::DbError;
use tracking_events::{Apply, BoxFuture};

use crate::convert::{campaign_from_event, plan_from_event, roster_from_event, roster_status};
use crate::domain::links::{destination_url, links_changed, shopify_redirect, tag_from_gateway};
use crate::domain::{CodeStatus, Plan, Profile, RosterStatus, Trigger, wants_code};
use crate::error::Error;
use crate::events;
use crate::store::{codes, failures, notify_work, projection, queue};

pub struct Projector {
    pub public_base_url: String,
}

impl Apply<PlanEvent> for Projector {
    fn apply<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        _seq: i64,
        event: &'a PlanEvent,
    ) -> BoxFuture<'a, Result<(), DbError>> {
        Box::pin(async move {
            self.apply_events(conn, std::iter::once(event))
                .await
                .map_err(db_error)
        })
    }

    fn apply_batch<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        events: &'a [(i64, PlanEvent)],
    ) -> BoxFuture<'a, Result<(), DbError>> {
        Box::pin(async move {
            self.apply_events(conn, events.iter().map(|(_, event)| event))
                .await
                .map_err(db_error)
        })
    }
}

fn db_error(err: Error) -> DbError {
    match err {
        Error::Unavailable(why) => DbError::Unavailable(why),
        other => DbError::Other(other.to_string()),
    }
}

/// What applying a batch of events (one transaction) remembers between them.
#[derive(Default)]
struct Batch {
    /// Each campaign's plan trigger (`None`: no plan), read once per batch: a roster is added
    /// in bulk, so a batch is mostly one campaign's entries. Forgotten at any plan or campaign
    /// event, which may change it.
    triggers: HashMap<(i64, i64), Option<Trigger>>,
    /// Creators queued to mint: the mint queue is notified once, if any.
    queued: usize,
}

impl Projector {
    /// Applies events in order, as one at a time would; the mint queue is told once. Roster
    /// events between two plan or campaign events are applied together ([`Self::apply_roster`]).
    async fn apply_events<'e>(
        &self,
        conn: &mut AsyncPgConnection,
        events: impl Iterator<Item = &'e PlanEvent>,
    ) -> Result<(), Error> {
        let events: Vec<&PlanEvent> = events.collect();
        // The rosters of the campaigns this batch removes creators from, or relinks, or whose
        // plan's links change, are held first, before anything here takes the outbox lock
        // (which a mint holding a roster may be waiting for): codes being minted there meanwhile
        // commit before the removals, relinks and link changes look for them, and codes minted
        // after see them (or are refused, made from the plan's terms before).
        let mut held: Vec<(i64, i64)> = Vec::new();
        for event in &events {
            match &event.subject {
                Some(Subject::RosterEntry(entry))
                    if roster_status(entry) == RosterStatus::Removed =>
                {
                    held.push((event.brand_id, entry.campaign_id));
                }
                Some(Subject::Campaign(campaign)) => {
                    let linked = campaign_from_event(event.brand_id, campaign).plan_id;
                    let known = projection::get_campaign(conn, event.brand_id, campaign.id).await?;
                    if known.is_some_and(|known| known.plan_id.is_some() && known.plan_id != linked)
                    {
                        held.push((event.brand_id, campaign.id));
                    }
                }
                Some(Subject::Plan(plan)) => {
                    let next = plan_from_event(event.brand_id, plan)?;
                    if let Some(known) = projection::get_plan(conn, event.brand_id, plan.id).await?
                        && links_changed(&known.terms, &next.terms)
                    {
                        for campaign in
                            projection::campaigns_of_plan(conn, event.brand_id, plan.id).await?
                        {
                            held.push((event.brand_id, campaign));
                        }
                    }
                }
                _ => {}
            }
        }
        held.sort_unstable();
        held.dedup();
        projection::hold_rosters(conn, &held).await?;
        let mut batch = Batch::default();
        let mut roster = Vec::new();
        for event in events {
            if let Some(Subject::RosterEntry(entry)) = &event.subject {
                roster.push((event, entry));
                continue;
            }
            self.apply_roster(conn, &roster, &mut batch).await?;
            roster.clear();
            self.apply_event(conn, event, &mut batch).await?;
        }
        self.apply_roster(conn, &roster, &mut batch).await?;
        if batch.queued > 0 {
            notify_work(conn).await?;
        }
        Ok(())
    }

    /// Roster events, in order: every entry's latest state stored in one statement, then each
    /// event's effect (a removed creator's code disabled; a creator added or approved whom the
    /// trigger wants, or whose failure a profile fix may have solved, queued), the queue written
    /// in one statement. Those effects read no roster entry, so this does what applying the
    /// events one by one would.
    async fn apply_roster(
        &self,
        conn: &mut AsyncPgConnection,
        events: &[(&PlanEvent, &RosterEntry)],
        batch: &mut Batch,
    ) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        let changes: Vec<((i64, i64, i64), Profile, RosterStatus)> = events
            .iter()
            .map(|(event, entry)| {
                let (profile, status) = roster_from_event(entry);
                (
                    (event.brand_id, entry.campaign_id, entry.creator_id),
                    profile,
                    status,
                )
            })
            .collect();
        let mut latest: HashMap<(i64, i64, i64), (&Profile, RosterStatus)> = HashMap::new();
        for (key, profile, status) in &changes {
            latest.insert(*key, (profile, *status));
        }
        let latest: Vec<_> = latest
            .into_iter()
            .map(|(key, (profile, status))| (key, profile, status))
            .collect();
        // The removed creators' codes, locked at once in the order every writer of codes locks
        // them, and before their roster entries, as `DisableCode` locks them: locked one by one
        // in the events' order, or after the entries, they could deadlock with a disable round
        // or a brand's disable.
        let removed: Vec<(i64, i64, i64)> = changes
            .iter()
            .filter(|(_, _, status)| *status == RosterStatus::Removed)
            .map(|(key, _, _)| *key)
            .collect();
        let mut live: HashMap<(i64, i64, i64), crate::domain::Code> =
            codes::live_of_creators(conn, &removed)
                .await?
                .into_iter()
                .map(|code| ((code.brand_id, code.campaign_id, code.creator_id), code))
                .collect();
        projection::upsert_roster(conn, &latest).await?;

        let mut queue = Vec::new();
        for ((event, _), (key, _, status)) in events.iter().zip(&changes) {
            if *status == RosterStatus::Removed {
                if let Some(code) = live.remove(key) {
                    self.disable_removed(conn, code).await?;
                }
                // Off the roster, a failure is nothing left for the brand to fix; added again,
                // the creator starts afresh (a code the brand disabled was the old stay's).
                failures::clear(conn, &[*key]).await?;
                projection::set_code_disabled(conn, *key, false).await?;
                continue;
            }
            let trigger = Self::trigger_of(conn, batch, key.0, key.1).await?;
            let wanted = trigger.is_some_and(|t| wants_code(t, *status));
            // The trigger answers its own event: being added, or approved for a plan minting at
            // approval. Another event (a profile update, an approval when codes come at add)
            // mints nothing by itself: a code the brand disabled stays disabled. A profile fix
            // retries a failure it may have solved: the brand's at any time, the trigger's while
            // the trigger still wants the code (after a switch to "when approved", an added
            // creator's no longer).
            let kind = EventKind::try_from(event.kind).unwrap_or(EventKind::Unspecified);
            let joined = match kind {
                EventKind::CreatorAdded => true,
                EventKind::CreatorApproved => trigger == Some(Trigger::OnApproval),
                _ => false,
            };
            // A creator queued (perhaps being minted from the profile before this one) is
            // queued again, so that an attempt failing on the old profile is followed by one on
            // this: its failure may not be recorded yet. Asked before the failure: a queued
            // attempt records its failure before its entry leaves the queue.
            let fixable = kind == EventKind::CreatorProfileUpdated
                && (queue::queued(conn, *key).await?
                    || failures::get(conn, *key).await?.is_some_and(|row| {
                        row.failure().fixed_by_profile() && (wanted || !row.by_trigger)
                    }));
            if ((joined && wanted) || fixable) && !queue.contains(key) {
                queue.push(*key);
            }
        }
        projection::enqueue(conn, &queue).await?;
        batch.queued += queue.len();
        Ok(())
    }

    /// The trigger of the plan `campaign` follows, if it has one.
    async fn trigger_of(
        conn: &mut AsyncPgConnection,
        batch: &mut Batch,
        brand_id: i64,
        campaign_id: i64,
    ) -> Result<Option<Trigger>, Error> {
        if let Some(known) = batch.triggers.get(&(brand_id, campaign_id)) {
            return Ok(*known);
        }
        let campaign = projection::get_campaign(conn, brand_id, campaign_id).await?;
        let trigger = match campaign.and_then(|c| c.plan_id) {
            Some(plan_id) => projection::get_plan(conn, brand_id, plan_id)
                .await?
                .map(|p| p.trigger),
            None => None,
        };
        batch.triggers.insert((brand_id, campaign_id), trigger);
        Ok(trigger)
    }

    /// A plan or campaign event (roster events go to [`Self::apply_roster`]).
    async fn apply_event(
        &self,
        conn: &mut AsyncPgConnection,
        event: &PlanEvent,
        batch: &mut Batch,
    ) -> Result<(), Error> {
        let brand_id = event.brand_id;
        // A plan or campaign event may change a campaign's trigger.
        batch.triggers.clear();
        let queued = match &event.subject {
            Some(Subject::Plan(plan)) => {
                let plan = plan_from_event(brand_id, plan)?;
                let before = projection::get_plan(conn, brand_id, plan.id).await?;
                projection::upsert_plan(conn, &plan).await?;
                if let Some(before) = &before {
                    self.follow_plan_links(conn, before, &plan).await?;
                }
                // Switching to "when added" mints for everyone on the roster who has no code;
                // switching to "when approved" mints nothing new: not even for the added
                // creators still queued.
                let switched_to_add = plan.trigger == Trigger::OnAdd
                    && before.as_ref().is_some_and(|b| b.trigger != Trigger::OnAdd);
                let switched_to_approval = plan.trigger == Trigger::OnApproval
                    && before.is_some_and(|b| b.trigger == Trigger::OnAdd);
                if switched_to_approval {
                    let dequeued =
                        projection::dequeue_added(conn, brand_id, Some(plan.id), None).await?;
                    if dequeued > 0 {
                        tracing::info!(
                            plan_id = plan.id,
                            dequeued,
                            "switched to minting at approval: queued added creators dropped"
                        );
                    }
                }
                if switched_to_add && !plan.archived {
                    projection::enqueue_missing(
                        conn,
                        brand_id,
                        Some(plan.id),
                        None,
                        &[RosterStatus::Added, RosterStatus::Approved],
                    )
                    .await?
                } else {
                    0
                }
            }
            Some(Subject::Campaign(campaign)) => {
                let campaign = campaign_from_event(brand_id, campaign);
                let before = projection::get_campaign(conn, brand_id, campaign.id).await?;
                projection::upsert_campaign(conn, &campaign).await?;
                let newly_linked = campaign.plan_id.is_some()
                    && before
                        .as_ref()
                        .is_none_or(|b| b.plan_id != campaign.plan_id);
                let relinked = newly_linked && before.is_some_and(|b| b.plan_id.is_some());
                match campaign.plan_id {
                    Some(plan_id) if newly_linked && !campaign.archived => {
                        let trigger = projection::get_plan(conn, brand_id, plan_id)
                            .await?
                            .map_or(Trigger::OnApproval, |p| p.trigger);
                        if relinked {
                            self.relink(conn, brand_id, campaign.id, plan_id, trigger)
                                .await?;
                        }
                        let statuses: &[RosterStatus] = match trigger {
                            Trigger::OnAdd => &[RosterStatus::Added, RosterStatus::Approved],
                            Trigger::OnApproval => &[RosterStatus::Approved],
                        };
                        projection::enqueue_missing(
                            conn,
                            brand_id,
                            None,
                            Some(campaign.id),
                            statuses,
                        )
                        .await?
                    }
                    _ => 0,
                }
            }
            // Applied together by `apply_roster`.
            Some(Subject::RosterEntry(_)) | None => 0,
        };
        batch.queued += queued;
        Ok(())
    }

    /// A plan whose click-through URL, UTM parameters or end date changed (before outreach, while
    /// it may) changes the tracking links of the codes already minted under it: their
    /// destination and when they end, announced (`CHANGED`) so that the redirect follows; a
    /// Shopify discount link sends the shopper on to the new page too. An
    /// Amazon Ads link's destination carries its creator's tag, which the pusher puts on the new
    /// page: the link goes back to waiting for it, and leads to its old page until then.
    async fn follow_plan_links(
        &self,
        conn: &mut AsyncPgConnection,
        before: &Plan,
        plan: &Plan,
    ) -> Result<(), Error> {
        if !links_changed(&before.terms, &plan.terms) {
            return Ok(());
        }
        let destination = destination_url(&plan.terms);
        let moved = destination != destination_url(&before.terms);
        let changed = if tag_from_gateway(plan.provider) {
            let changed = codes::follow_plan_tagged_links(
                conn,
                plan.brand_id,
                plan.id,
                moved,
                plan.terms.ends_at,
            )
            .await?;
            if moved && !changed.is_empty() {
                notify_work(conn).await?;
            }
            changed
        } else {
            let redirect =
                (plan.provider == Provider::Shopify).then(|| shopify_redirect(&plan.terms));
            codes::follow_plan_links(
                conn,
                plan.brand_id,
                plan.id,
                &destination,
                plan.terms.ends_at,
                redirect.as_deref(),
            )
            .await?
        };
        let events: Vec<_> = changed
            .iter()
            .map(|c| events::code(CodeEventKind::Changed, c, &self.public_base_url))
            .collect();
        tracking_events::append(conn, &events).await?;
        if !changed.is_empty() {
            tracing::info!(
                plan_id = plan.id,
                codes = changed.len(),
                "plan's link terms changed, codes' links follow"
            );
        }
        Ok(())
    }

    /// A campaign relinked to `plan_id` (before outreach, the only time it may be): the codes its
    /// creators hold under other plans are disabled here and at their stores (never given to
    /// anyone else), so that each is minted a code of the new plan, with its terms and at its
    /// store, as its `trigger` says (the caller queues them); creators only added come off the
    /// queue when the new plan mints at approval. Codes being minted meanwhile under the old
    /// plan commit before this (and are disabled) or are refused ([`codes::reserve`]).
    async fn relink(
        &self,
        conn: &mut AsyncPgConnection,
        brand_id: i64,
        campaign_id: i64,
        plan_id: i64,
        trigger: Trigger,
    ) -> Result<(), Error> {
        if trigger == Trigger::OnApproval {
            projection::dequeue_added(conn, brand_id, None, Some(campaign_id)).await?;
        }
        let live =
            codes::live_of_campaign_not_of_plan(conn, brand_id, campaign_id, plan_id).await?;
        if live.is_empty() {
            return Ok(());
        }
        self.disable(conn, brand_id, &live).await?;
        // A store's refusal of a code retired here is no longer the brand's to act on.
        let keys: Vec<(i64, i64, i64)> = live
            .iter()
            .map(|c| (c.brand_id, c.campaign_id, c.creator_id))
            .collect();
        failures::clear(conn, &keys).await?;
        tracing::info!(
            campaign_id,
            plan_id,
            codes = live.len(),
            "campaign relinked, its codes of the plan it left disabled"
        );
        Ok(())
    }

    /// Disables live `codes` (locked by the caller) here and at their stores, announced: their
    /// texts are never given to anyone else (the unique index keeps disabled codes).
    async fn disable(
        &self,
        conn: &mut AsyncPgConnection,
        brand_id: i64,
        live: &[crate::domain::Code],
    ) -> Result<(), Error> {
        let ids: Vec<i64> = live.iter().map(|c| c.id).collect();
        let disabled = codes::set_status(conn, brand_id, &ids, CodeStatus::Disabled).await?;
        if live.iter().any(|c| c.code.is_some()) {
            codes::queue_store_disables(conn, live).await?;
            notify_work(conn).await?;
        }
        let events: Vec<_> = disabled
            .iter()
            .map(|c| events::code(CodeEventKind::Disabled, c, &self.public_base_url))
            .collect();
        tracking_events::append(conn, &events).await?;
        Ok(())
    }

    /// A removed creator's live `code` (locked) is disabled here and at the store.
    async fn disable_removed(
        &self,
        conn: &mut AsyncPgConnection,
        code: crate::domain::Code,
    ) -> Result<(), Error> {
        self.disable(conn, code.brand_id, std::slice::from_ref(&code))
            .await?;
        tracing::info!(
            campaign_id = code.campaign_id,
            creator_id = code.creator_id,
            code_id = code.id,
            "creator removed, code disabled"
        );
        Ok(())
    }
}
