//! Amazon Attribution report rows as applied to the daily figures (`report_sales`).

use chrono::{DateTime, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Date, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_db::{Database, DbError};

/// A report row of one creator's tag: the integration, the tag's campaign, the creator, the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowKey {
    pub brand_id: i64,
    pub integration_id: i64,
    pub tag_campaign_id: i64,
    pub creator_id: i64,
    pub day: NaiveDate,
}

/// What a report row added for one campaign.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct ReportSale {
    /// From the conversions' sequence; assigned when first stored (0 before), kept after.
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = BigInt)]
    pub integration_id: i64,
    #[diesel(sql_type = BigInt)]
    pub tag_campaign_id: i64,
    #[diesel(sql_type = BigInt)]
    pub creator_id: i64,
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = BigInt)]
    pub campaign_id: i64,
    #[diesel(sql_type = BigInt)]
    pub plan_id: i64,
    #[diesel(sql_type = Integer)]
    pub revision: i32,
    #[diesel(sql_type = Text)]
    pub currency: String,
    #[diesel(sql_type = BigInt)]
    pub purchases: i64,
    #[diesel(sql_type = BigInt)]
    pub sales_minor: i64,
    #[diesel(sql_type = BigInt)]
    pub commission_minor: i64,
    #[diesel(sql_type = Text)]
    pub commission_currency: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = BigInt)]
    pub approved_commission_minor: i64,
    #[diesel(sql_type = Date)]
    pub approve_on: NaiveDate,
    /// Several campaigns share the plan, and so this row.
    #[diesel(sql_type = Bool)]
    pub shared: bool,
    /// False when applied before the campaign's plan was known here (no commission rule).
    #[diesel(sql_type = Bool)]
    pub priced: bool,
    /// When stored; set by the database.
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, brand_id, integration_id, tag_campaign_id, creator_id, day, \
    campaign_id, plan_id, revision, currency, purchases, sales_minor, commission_minor, \
    commission_currency, status, approved_commission_minor, approve_on, shared, priced, updated_at";

/// Serializes the pricing of report rows in the caller's transaction: a row applied while its
/// campaign's plan is unknown and that plan arriving (`reprice`) must not pass each other unseen
/// in two concurrent transactions. Held until commit.
pub async fn lock_pricing(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    tracking_db::prepared(
        "select pg_advisory_xact_lock(hashtext(current_schema() || '.report_pricing'))",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// What a report row added so far (one row per campaign credited), locked.
pub async fn applied(
    conn: &mut AsyncPgConnection,
    key: &RowKey,
) -> Result<Vec<ReportSale>, DbError> {
    // The key joined (see tracking_db::stale_statistics): with constants, a planner whose
    // statistics had not seen the brand read all its rows through report_sales_id.
    Ok(tracking_db::prepared(format!(
        "select {COLUMNS}
         from unnest(array[$1::bigint], array[$2::bigint], array[$3::bigint], array[$4::bigint],
             array[$5::date])
             as k(key_brand, key_integration, key_tag_campaign, key_creator, key_day)
         join report_sales s on s.brand_id = k.key_brand and s.integration_id = k.key_integration
             and s.tag_campaign_id = k.key_tag_campaign and s.creator_id = k.key_creator
             and s.day = k.key_day
         order by s.campaign_id for update of s"
    ))
    .bind::<BigInt, _>(key.brand_id)
    .bind::<BigInt, _>(key.integration_id)
    .bind::<BigInt, _>(key.tag_campaign_id)
    .bind::<BigInt, _>(key.creator_id)
    .bind::<Date, _>(key.day)
    .load(conn)
    .await?)
}

/// Replaces what a report row added with `sales` (ids kept per campaign); returns them as
/// stored.
pub async fn replace(
    conn: &mut AsyncPgConnection,
    key: &RowKey,
    sales: &[ReportSale],
) -> Result<Vec<ReportSale>, DbError> {
    tracking_db::prepared(
        // The key joined, as in `applied` (see tracking_db::stale_statistics).
        "delete from report_sales s
         using unnest(array[$1::bigint], array[$2::bigint], array[$3::bigint], array[$4::bigint],
             array[$5::date])
             as k(key_brand, key_integration, key_tag_campaign, key_creator, key_day)
         where s.brand_id = k.key_brand and s.integration_id = k.key_integration
           and s.tag_campaign_id = k.key_tag_campaign and s.creator_id = k.key_creator
           and s.day = k.key_day and s.campaign_id <> all($6)",
    )
    .bind::<BigInt, _>(key.brand_id)
    .bind::<BigInt, _>(key.integration_id)
    .bind::<BigInt, _>(key.tag_campaign_id)
    .bind::<BigInt, _>(key.creator_id)
    .bind::<Date, _>(key.day)
    .bind::<Array<BigInt>, _>(sales.iter().map(|s| s.campaign_id).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    let mut stored = Vec::with_capacity(sales.len());
    for sale in sales {
        stored.push(save(conn, sale).await?);
    }
    Ok(stored)
}

/// Inserts `sale`, or updates the stored one of its row and campaign (keeping its id); returns
/// it as stored.
pub async fn save(conn: &mut AsyncPgConnection, sale: &ReportSale) -> Result<ReportSale, DbError> {
    Ok(tracking_db::prepared(format!(
        "insert into report_sales (brand_id, integration_id, tag_campaign_id, creator_id, day,
             campaign_id, plan_id, revision, currency, purchases, sales_minor, commission_minor,
             commission_currency, status, approved_commission_minor, approve_on, shared, priced)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
         on conflict (brand_id, integration_id, tag_campaign_id, creator_id, day, campaign_id)
         do update set plan_id = excluded.plan_id, revision = excluded.revision,
             currency = excluded.currency, purchases = excluded.purchases,
             sales_minor = excluded.sales_minor, commission_minor = excluded.commission_minor,
             commission_currency = excluded.commission_currency, status = excluded.status,
             approved_commission_minor = excluded.approved_commission_minor,
             approve_on = excluded.approve_on, shared = excluded.shared,
             priced = excluded.priced, updated_at = now()
         returning {COLUMNS}"
    ))
    .bind::<BigInt, _>(sale.brand_id)
    .bind::<BigInt, _>(sale.integration_id)
    .bind::<BigInt, _>(sale.tag_campaign_id)
    .bind::<BigInt, _>(sale.creator_id)
    .bind::<Date, _>(sale.day)
    .bind::<BigInt, _>(sale.campaign_id)
    .bind::<BigInt, _>(sale.plan_id)
    .bind::<Integer, _>(sale.revision)
    .bind::<Text, _>(&sale.currency)
    .bind::<BigInt, _>(sale.purchases)
    .bind::<BigInt, _>(sale.sales_minor)
    .bind::<BigInt, _>(sale.commission_minor)
    .bind::<Text, _>(&sale.commission_currency)
    .bind::<Text, _>(&sale.status)
    .bind::<BigInt, _>(sale.approved_commission_minor)
    .bind::<Date, _>(sale.approve_on)
    .bind::<Bool, _>(sale.shared)
    .bind::<Bool, _>(sale.priced)
    .get_result(conn)
    .await?)
}

/// Priced pending commissions due for approval through the profile day `today` (at most `limit`), locked; other replicas'
/// approvers skip them.
pub async fn due(
    conn: &mut AsyncPgConnection,
    today: NaiveDate,
    limit: i64,
) -> Result<Vec<ReportSale>, DbError> {
    Ok(tracking_db::prepared(format!(
        "select {COLUMNS} from report_sales
         where status = 'pending' and approve_on <= $1 and priced
         order by approve_on limit $2 for update skip locked"
    ))
    .bind::<Date, _>(today)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// The report rows of `brand_id` applied without a commission rule whose campaign and plan are
/// known now.
pub async fn unpriced(conn: &mut AsyncPgConnection, brand_id: i64) -> Result<Vec<RowKey>, DbError> {
    #[derive(QueryableByName)]
    struct Key {
        #[diesel(sql_type = BigInt)]
        integration_id: i64,
        #[diesel(sql_type = BigInt)]
        tag_campaign_id: i64,
        #[diesel(sql_type = BigInt)]
        creator_id: i64,
        #[diesel(sql_type = Date)]
        day: NaiveDate,
    }
    let keys: Vec<Key> = tracking_db::prepared(
        // The brand's unpriced rows first (report_sales_unpriced), then campaigns and plans by
        // key: with the brand a constant there too, stale statistics
        // (tracking_db::stale_statistics) looped over the brand's campaigns for every row.
        "with u as materialized (
             select brand_id, integration_id, tag_campaign_id, creator_id, day
             from report_sales where brand_id = $1 and not priced)
         select distinct u.integration_id, u.tag_campaign_id, u.creator_id, u.day
         from u
             join campaigns c on c.brand_id = u.brand_id and c.campaign_id = u.tag_campaign_id
             join plans p on p.brand_id = c.brand_id and p.plan_id = c.plan_id
         order by u.integration_id, u.tag_campaign_id, u.creator_id, u.day",
    )
    .bind::<BigInt, _>(brand_id)
    .load(conn)
    .await?;
    Ok(keys
        .into_iter()
        .map(|k| RowKey {
            brand_id,
            integration_id: k.integration_id,
            tag_campaign_id: k.tag_campaign_id,
            creator_id: k.creator_id,
            day: k.day,
        })
        .collect())
}

/// A campaign's report days (one creator's, or a status's), newest id first, ids below
/// `before`.
pub async fn list(
    db: &Database,
    brand_id: i64,
    campaign_id: i64,
    creator_id: Option<i64>,
    status: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<ReportSale>, DbError> {
    let mut conn = db.conn().await?;
    // The brand is joined as a key, and so is the campaign when a creator is given; the column
    // that picks the index (the creator for report_sales_by_campaign, else the campaign for
    // report_sales_by_campaign_id) stays a constant (tracking_db::stale_statistics). With a brand
    // constant the statistics had not seen, report_sales_id looked as cheap, and a creator's
    // page read the brand's every row.
    let (keys, campaign) = if creator_id.is_some() {
        (
            "unnest(array[$1::bigint], array[$2::bigint]) as k(key_brand, key_campaign)",
            "k.key_campaign",
        )
    } else {
        ("unnest(array[$1::bigint]) as k(key_brand)", "$2::bigint")
    };
    Ok(tracking_db::prepared(format!(
        "select {COLUMNS} from {keys}
         cross join lateral (select * from report_sales x
             where x.brand_id = k.key_brand and x.campaign_id = {campaign}
               and ($3::bigint is null or x.creator_id = $3) and ($4::text is null or x.status = $4)
               and ($5::bigint is null or x.id < $5)
             order by x.id desc limit $6) s
         order by id desc"
    ))
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(campaign_id)
    .bind::<Nullable<BigInt>, _>(creator_id)
    .bind::<Nullable<Text>, _>(status)
    .bind::<Nullable<BigInt>, _>(before)
    .bind::<BigInt, _>(limit)
    .load(&mut conn)
    .await?)
}
