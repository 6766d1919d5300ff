//! The creator's sales report: CSV, one row per conversion, no customer personal data. Streamed
//! in chunks as pages of conversions are read.
//!
//! A creator on an Amazon Ads plan has no orders: each day of Amazon Attribution's report is one
//! row, `kind` `amazon_report_day`, with the day (the advertiser profile's calendar day), the
//! attributed purchases, the sales as revenue, and the commission and its status; the order
//! columns stay empty. The last three columns were added after the others, so a reader of the
//! earlier file finds its columns where they were.

use futures::Stream;
use tonic::Status;
use tracking_db::Database;

use crate::convert::report_commission;
use crate::store::amazon_reports::ReportSale;
use crate::store::conversions::{self, ConversionRow, Entry, Filter};

pub const HEADER: &str = "order_id,ordered_at,order_status,conversion_status,method,matched,\
currency,revenue,discount,commission,commission_currency,commission_adjusted,share_bps,\
split_rule,shared,kind,report_day,purchases\n";

/// Conversions read per page (and CSV rows per chunk).
const PAGE: i64 = 500;

/// `minor` units of `currency` as a decimal ("12.50", "1200" for JPY, "-0.05").
pub use tracking_api::common::v1::format_minor as decimal;

/// A CSV field: quoted when it must be, and never read as a formula by a spreadsheet.
fn field(text: &str) -> String {
    // OWASP's list: a tab or carriage return first also starts a formula in some spreadsheets.
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    // A semicolon or tab too: spreadsheets in many locales split on them, and a cell cut there
    // could start a formula of its own.
    if text.contains([',', ';', '\t', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

pub fn row(c: &ConversionRow) -> String {
    let mut line = [
        field(&c.store_order_id),
        c.ordered_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        c.order_status.clone(),
        c.status.clone(),
        c.method.clone(),
        field(&c.matched),
        c.currency.clone(),
        decimal(c.revenue_minor + c.adjusted_revenue_minor, &c.currency),
        decimal(c.discount_minor, &c.currency),
        decimal(c.commission_minor, &c.commission_currency),
        c.commission_currency.clone(),
        decimal(c.adjusted_commission_minor, &c.commission_currency),
        c.share_bps.to_string(),
        c.split_rule.clone(),
        c.shared.to_string(),
        "order".to_owned(),
        String::new(),
        String::new(),
    ]
    .join(",");
    line.push('\n');
    line
}

/// An Amazon report day's row: the order columns empty.
pub fn report_day_row(sale: &ReportSale) -> String {
    let (commission, adjusted) = report_commission(sale);
    let mut line = [
        String::new(),
        String::new(),
        String::new(),
        sale.status.clone(),
        String::new(),
        String::new(),
        sale.currency.clone(),
        decimal(sale.sales_minor, &sale.currency),
        String::new(),
        decimal(commission, &sale.commission_currency),
        sale.commission_currency.clone(),
        decimal(adjusted, &sale.commission_currency),
        "10000".to_owned(),
        String::new(),
        sale.shared.to_string(),
        "amazon_report_day".to_owned(),
        sale.day.to_string(),
        sale.purchases.to_string(),
    ]
    .join(",");
    line.push('\n');
    line
}

/// The report as a stream of chunks: the header, then a chunk per page of entries (orders'
/// conversions and Amazon report days, newest first).
pub fn csv(
    db: Database,
    brand_id: i64,
    campaign_id: i64,
    creator_id: i64,
) -> impl Stream<Item = Result<Vec<u8>, Status>> + Send + 'static {
    let filter = Filter {
        creator_id: Some(creator_id),
        ..Filter::default()
    };
    futures::stream::unfold((Some(None::<i64>), true), move |(cursor, first)| {
        let db = db.clone();
        let filter = filter.clone();
        async move {
            let before = cursor?;
            let entries =
                match conversions::entries(&db, brand_id, campaign_id, &filter, before, PAGE).await
                {
                    Ok(entries) => entries,
                    Err(err) => {
                        return Some((Err(tracking_server::status::from_db(err)), (None, false)));
                    }
                };
            let next = (entries.len() as i64 == PAGE).then(|| entries.last().map(Entry::id));
            let mut chunk = if first {
                HEADER.to_owned()
            } else {
                String::new()
            };
            for entry in &entries {
                chunk.push_str(&match entry {
                    Entry::Order(conversion) => row(conversion),
                    Entry::AmazonReportDay(sale) => report_day_row(sale),
                });
            }
            if chunk.is_empty() {
                return None;
            }
            Some((Ok(chunk.into_bytes()), (next, false)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_follow_the_currency() {
        assert_eq!(decimal(1250, "EUR"), "12.50");
        assert_eq!(decimal(-5, "USD"), "-0.05");
        assert_eq!(decimal(1200, "JPY"), "1200");
        assert_eq!(decimal(1250, "KWD"), "1.250");
    }

    #[test]
    fn fields_are_quoted_and_defused() {
        assert_eq!(field("A,1"), "\"A,1\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(field("\t=1+1"), "\"'\t=1+1\"");
        assert_eq!(
            field("1001;=HYPERLINK(\"x\")"),
            "\"1001;=HYPERLINK(\"\"x\"\")\""
        );
        assert_eq!(field("\r=1+1"), "\"'\r=1+1\"");
        assert_eq!(field("ANNA10"), "ANNA10");
    }
}
