//! Campaigns: one plan each, shared plans only when asked for (and then visibly), and a plan
//! that locks once outreach starts.

use chrono::{DateTime, Utc};

use super::plan::Plan;
use crate::error::Error;

#[derive(Clone, Debug, PartialEq)]
pub struct Campaign {
    pub brand_id: i64,
    pub id: i64,
    pub name: String,
    pub plan_id: Option<i64>,
    /// Other campaigns linked to the same plan: every sale is recorded in each of them.
    pub shared_with: Vec<i64>,
    pub outreach_started_at: Option<DateTime<Utc>>,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Campaign {
    pub fn ensure_active(&self) -> Result<(), Error> {
        if self.archived_at.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "campaign {} is archived",
                self.id
            )));
        }
        Ok(())
    }

    /// The warning shown on a campaign whose plan is shared.
    pub fn shared_plan_warning(&self) -> Option<String> {
        if self.shared_with.is_empty() {
            return None;
        }
        let others: Vec<String> = self.shared_with.iter().map(i64::to_string).collect();
        Some(format!(
            "plan {} is shared with campaign(s) {}: every sale with its codes is recorded in each \
             campaign, so commissions may be paid twice",
            self.plan_id.unwrap_or_default(),
            others.join(", ")
        ))
    }
}

/// Whether linking `plan` to `campaign` is allowed. `linked_elsewhere` are the other campaigns
/// already using the plan.
pub fn check_link(
    campaign: &Campaign,
    plan: &Plan,
    linked_elsewhere: &[i64],
    allow_shared: bool,
) -> Result<(), Error> {
    campaign.ensure_active()?;
    if campaign.outreach_started_at.is_some() && campaign.plan_id != Some(plan.id) {
        return Err(Error::FailedPrecondition(format!(
            "campaign {} has started outreach: its plan is locked",
            campaign.id
        )));
    }
    if plan.archived_at.is_some() {
        return Err(Error::FailedPrecondition(format!(
            "plan {} is archived and cannot be linked",
            plan.id
        )));
    }
    if !linked_elsewhere.is_empty() && !allow_shared {
        let others: Vec<String> = linked_elsewhere.iter().map(i64::to_string).collect();
        return Err(Error::FailedPrecondition(format!(
            "plan {} is already linked to campaign(s) {}; set allow_shared to share it (every sale \
             is then recorded in each campaign: double-payment risk)",
            plan.id,
            others.join(", ")
        )));
    }
    Ok(())
}

/// Whether outreach may start.
pub fn check_start_outreach(campaign: &Campaign) -> Result<(), Error> {
    campaign.ensure_active()?;
    if campaign.plan_id.is_none() {
        return Err(Error::FailedPrecondition(format!(
            "campaign {} has no plan: link one before starting outreach",
            campaign.id
        )));
    }
    Ok(())
}
