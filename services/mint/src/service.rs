//! CodeMintService's use cases, free of tonic.

use std::collections::HashMap;

use diesel_async::AsyncConnection;
use futures::future::join_all;
use tracking_api::mint::v1::{CodeEventKind, MANUAL};
use tracking_events::EventLog;
use tracking_pattern::Pattern;

use crate::context::Shared;
use crate::domain::links::{affiliate_url, tracking_url, with_redirect_of};
use crate::domain::render::{normalize_manual, render_code};
use crate::domain::{Code, CodeStatus, Failure, Plan, Profile};
use crate::edits;
use crate::error::Error;
use crate::events;
use crate::minter::{Key, Minted, Minter};
use crate::pusher::HOLD_SECS;
use crate::random::SecureRandom;
use crate::store::failures::FailureRow;
use crate::store::{codes, failures, notify_work, projection, queue, renames};

/// How a brand's edit of a code began.
enum Edit {
    /// The code already has the requested text.
    Unchanged(Code),
    /// The code has its new text and the edit is to be made at the store.
    Started(Code, renames::Rename),
}

/// One creator's preview.
#[derive(Clone, Debug)]
pub struct Preview {
    pub creator_id: i64,
    pub result: Result<String, Failure>,
    pub collides: bool,
}

#[derive(Clone, Debug)]
pub struct MintService {
    pub(crate) shared: Shared,
    pub(crate) minter: Minter,
    pub(crate) log: EventLog,
}

impl MintService {
    pub fn new(shared: Shared, minter: Minter, log: EventLog) -> Self {
        Self {
            shared,
            minter,
            log,
        }
    }

    pub fn public_base_url(&self) -> &str {
        &self.shared.public_base_url
    }

    async fn conn(&self) -> Result<tracking_db::Conn, Error> {
        Ok(self.shared.db.conn().await?)
    }

    #[tracing::instrument(skip(self))]
    pub async fn mint(&self, key: Key) -> Result<Minted, Error> {
        let minted = self.minter.mint_or_shed(key).await?;
        if minted.created {
            tracing::info!(code_id = minted.code.id, "code minted");
        }
        Ok(minted)
    }

    /// `RetryCode`: mints the creator's code, or, when they have one the store has not taken
    /// yet (it refused it, or could not be reached), pushes it again now rather than at the end
    /// of its backoff (up to 5 minutes).
    pub async fn retry(&self, key: Key) -> Result<Minted, Error> {
        let minted = self.mint(key).await?;
        self.push_again_now(&minted.code).await?;
        Ok(minted)
    }

    async fn push_again_now(&self, code: &Code) -> Result<(), Error> {
        if code.status != CodeStatus::Pending || code.store_error.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            if codes::push_now(conn, code.brand_id, code.id).await? {
                notify_work(conn).await?;
            }
            Ok(())
        })
        .await
    }

    pub async fn get_code(&self, brand_id: i64, id: i64) -> Result<Code, Error> {
        let mut conn = self.conn().await?;
        codes::get(&mut conn, brand_id, id, false)
            .await?
            .ok_or_else(|| Error::NotFound(format!("code {id} not found")))
    }

    pub async fn list_codes(
        &self,
        brand_id: i64,
        campaign_id: i64,
        creator_id: Option<i64>,
        status: Option<CodeStatus>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Code>, Error> {
        let mut conn = self.conn().await?;
        codes::list(
            &mut conn,
            brand_id,
            campaign_id,
            creator_id,
            status,
            after,
            limit,
        )
        .await
    }

    pub async fn resolve(
        &self,
        brand_id: i64,
        integration_id: i64,
        code: &str,
    ) -> Result<Code, Error> {
        let mut conn = self.conn().await?;
        codes::resolve(&mut conn, brand_id, integration_id, code.trim())
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no code {:?} at integration {integration_id}",
                    code.trim()
                ))
            })
    }

    /// The failure on record for one creator of a campaign, if any.
    pub async fn failure_of(&self, key: Key) -> Result<Option<FailureRow>, Error> {
        let mut conn = self.conn().await?;
        failures::get(&mut conn, key).await
    }

    pub async fn list_failures(
        &self,
        brand_id: i64,
        campaign_id: i64,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<FailureRow>, Error> {
        let mut conn = self.conn().await?;
        failures::list(&mut conn, brand_id, campaign_id, after, limit).await
    }

    /// A brand's manual edit: unique here, accepted by the store, the old code disabled there.
    #[tracing::instrument(skip(self))]
    pub async fn update_code(
        &self,
        brand_id: i64,
        id: i64,
        requested: &str,
    ) -> Result<Code, Error> {
        let current = self.get_code(brand_id, id).await?;
        let mut conn = self.conn().await?;
        let plan = projection::get_plan(&mut conn, brand_id, current.plan_id)
            .await?
            .ok_or_else(|| {
                Error::FailedPrecondition(format!("plan {} is not known", current.plan_id))
            })?;
        let rules = self
            .shared
            .stores
            .rules(brand_id, plan.provider)
            .await?
            .ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "{} has no discount codes",
                    plan.provider.as_str_name()
                ))
            })?;
        let new_code =
            normalize_manual(requested, &rules).map_err(|why| Error::invalid("code", why))?;
        let shop = if plan.provider == tracking_api::common::v1::Provider::Shopify {
            self.shared
                .stores
                .shop_domain(brand_id, current.integration_id)
                .await?
        } else {
            String::new()
        };
        let shared = &self.shared;
        let taken =
            || Error::AlreadyExists(format!("code {new_code} is already used at this store"));
        // The code takes its new text here first (unique), then the store renames its discount
        // with no transaction open (`edits`).
        let started = conn
            .transaction::<_, Error, _>(async |conn| {
                let code = codes::get(conn, brand_id, id, true)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("code {id} not found")))?;
                if code.status == CodeStatus::Disabled {
                    return Err(Error::FailedPrecondition(format!("code {id} is disabled")));
                }
                let Some(old_text) = code.code.clone() else {
                    return Err(Error::FailedPrecondition(format!(
                        "code {id} is a link without a code"
                    )));
                };
                // The same edit again while the first is still at the store is not done yet:
                // the store may still refuse the new text.
                if renames::in_progress(conn, brand_id, id).await? {
                    return Err(Error::FailedPrecondition(format!(
                        "code {id} is being edited at the store; try again in a moment"
                    )));
                }
                if old_text == new_code {
                    return Ok(Edit::Unchanged(code));
                }
                // To the plan's page as the code's link has it now: the plan, read before the
                // code was locked, may have moved its page since.
                let affiliate = with_redirect_of(
                    &affiliate_url(
                        plan.provider,
                        &tracking_url(&shared.public_base_url, &code.slug),
                        &shop,
                        Some(&new_code),
                        &plan.terms,
                    ),
                    &code.affiliate_url,
                );
                let renamed = codes::rename(
                    conn,
                    &code,
                    &new_code,
                    &affiliate,
                    MANUAL,
                    CodeStatus::Pending,
                )
                .await?
                .ok_or_else(taken)?;
                let rename = renames::begin(conn, &code, HOLD_SECS)
                    .await?
                    .ok_or_else(|| {
                        Error::FailedPrecondition(format!(
                            "code {id} is being edited at the store; try again in a moment"
                        ))
                    })?;
                Ok(Edit::Started(renamed, rename))
            })
            .await
            .map_err(|err| match err {
                Error::AlreadyExists(why) if why.starts_with("unique violation") => taken(),
                other => other,
            })?;
        drop(conn);
        let (renamed, rename) = match started {
            Edit::Started(renamed, rename) => (renamed, rename),
            Edit::Unchanged(code) => return Ok(code),
        };
        // In a task of its own, so that a caller who stops waiting does not leave the edit to
        // wait for its hold to run out.
        let shared = self.shared.clone();
        let updated =
            tokio::spawn(async move { edits::make(&shared, Some(plan), renamed, rename).await })
                .await
                .map_err(|err| Error::Internal(format!("the edit's task failed: {err}")))??;
        tracing::info!(code_id = id, "code edited by the brand");
        Ok(updated)
    }

    /// Disables a code here and at the store. Idempotent.
    #[tracing::instrument(skip(self))]
    pub async fn disable_code(&self, brand_id: i64, id: i64) -> Result<Code, Error> {
        let mut conn = self.conn().await?;
        let public_base_url = self.shared.public_base_url.clone();
        conn.transaction::<_, Error, _>(async |conn| {
            let code = codes::get(conn, brand_id, id, true)
                .await?
                .ok_or_else(|| Error::NotFound(format!("code {id} not found")))?;
            if code.status == CodeStatus::Disabled {
                return Ok(code);
            }
            let disabled = codes::set_status(conn, brand_id, &[id], CodeStatus::Disabled)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| Error::NotFound(format!("code {id} not found")))?;
            if let Some(text) = &code.code {
                codes::queue_store_disable(conn, brand_id, code.integration_id, text, code.id)
                    .await?;
                notify_work(conn).await?;
            }
            // No trigger mints the creator another code by itself (one queued for them, or
            // being minted now, is taken off the queue; the queue's worker and the projection
            // skip creators so marked), and no retry of a failure the code met (the store's
            // refusal of it) either.
            let key = (brand_id, code.campaign_id, code.creator_id);
            projection::set_code_disabled(conn, key, true).await?;
            queue::forget(conn, key).await?;
            failures::clear(conn, &[key]).await?;
            let event = events::code(CodeEventKind::Disabled, &disabled, &public_base_url);
            tracking_events::append(conn, &[event]).await?;
            Ok(disabled)
        })
        .await
    }

    /// Retries every failed mint of a campaign; returns (retried, minted).
    pub async fn retry_failed(
        &self,
        brand_id: i64,
        campaign_id: i64,
    ) -> Result<(usize, usize), Error> {
        let mut keys = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .list_failures(brand_id, campaign_id, after, 500)
                .await?;
            let full = page.len() == 500;
            after = page.last().map(|row| row.creator_id);
            keys.extend(
                page.iter()
                    .map(|row| (brand_id, row.campaign_id, row.creator_id)),
            );
            if !full {
                break;
            }
        }
        let results = join_all(keys.iter().map(|key| async {
            let minted = self.minter.mint(*key).await?;
            self.push_again_now(&minted.code).await?;
            Ok::<_, Error>(minted)
        }))
        .await;
        // A code pushed again is not minted (its push answers later; ListFailures tells).
        let minted = results
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|minted| minted.created))
            .count();
        if let Some(Err(err)) = results
            .iter()
            .find(|r| matches!(r, Err(e) if e.is_transient()))
        {
            return Err(err.clone());
        }
        Ok((keys.len(), minted))
    }

    /// What `pattern` (or the plan's) gives each creator on a page of the roster.
    pub async fn preview(
        &self,
        brand_id: i64,
        campaign_id: i64,
        pattern: Option<&str>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Preview>, Error> {
        let mut conn = self.conn().await?;
        let campaign = projection::get_campaign(&mut conn, brand_id, campaign_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("campaign {campaign_id} not found")))?;
        let plan: Plan = match campaign.plan_id {
            Some(plan_id) => projection::get_plan(&mut conn, brand_id, plan_id).await?,
            None => None,
        }
        .ok_or_else(|| Error::FailedPrecondition(format!("campaign {campaign_id} has no plan")))?;
        let rules = self
            .shared
            .stores
            .rules(brand_id, plan.provider)
            .await?
            .ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "{} tracks with links, not codes",
                    plan.provider.as_str_name()
                ))
            })?;
        let text = pattern.unwrap_or(&plan.terms.code_pattern);
        let parsed = Pattern::parse(text).map_err(|e| Error::invalid("pattern", e.to_string()))?;
        // A proposed pattern must tell this roster's creators apart well enough; the plan's own
        // is previewed as minting renders it (suffixes settle its clashes there too).
        if pattern.is_some() {
            let roster_size = projection::roster_size(&mut conn, brand_id, campaign_id).await?;
            parsed
                .check_keyspace(u64::try_from(roster_size).unwrap_or_default())
                .map_err(|e| Error::invalid("pattern", e.to_string()))?;
        }

        let rows = projection::roster_page(&mut conn, brand_id, campaign_id, after, limit).await?;
        let mut rng = SecureRandom::default();
        let mut previews: Vec<Preview> = rows
            .into_iter()
            .map(|row| {
                let profile: Profile = serde_json::from_value(row.profile).unwrap_or_default();
                Preview {
                    creator_id: row.creator_id,
                    result: render_code(&parsed, &plan, &campaign.name, &profile, &rules, &mut rng),
                    collides: false,
                }
            })
            .collect();
        let rendered: Vec<String> = previews
            .iter()
            .filter_map(|p| p.result.clone().ok())
            .collect();
        let held = codes::holders(&mut conn, brand_id, plan.integration_id, &rendered).await?;
        let mut seen: HashMap<String, usize> = HashMap::new();
        for code in &rendered {
            *seen.entry(code.to_lowercase()).or_default() += 1;
        }
        for preview in &mut previews {
            if let Ok(code) = &preview.result {
                let lower = code.to_lowercase();
                // Minting gives a creator their own live code back; any other holder, or their
                // own disabled code, takes the text.
                let held_by_other = held.iter().any(|holder| {
                    holder.code == lower
                        && (!holder.live
                            || (holder.campaign_id, holder.creator_id)
                                != (campaign_id, preview.creator_id))
                });
                preview.collides =
                    held_by_other || seen.get(&lower).copied().unwrap_or_default() > 1;
            }
        }
        Ok(previews)
    }
}
