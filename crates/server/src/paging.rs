//! Keyset paging shared by every list RPC: a page size and an opaque token holding the last key
//! of the previous page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tonic::Status;
use tracking_api::common::v1::{PageRequest, PageResponse};

use crate::status::invalid;

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 500;

/// A validated page request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub size: i64,
    /// The last key of the previous page; `None` for the first page.
    pub after: Option<i64>,
}

impl Page {
    /// Validates `page` (absent means the first page of the default size).
    pub fn parse(page: Option<&PageRequest>) -> Result<Page, Status> {
        let Some(page) = page else {
            return Ok(Page {
                size: DEFAULT_PAGE_SIZE,
                after: None,
            });
        };
        let size = match i64::from(page.page_size) {
            0 => DEFAULT_PAGE_SIZE,
            n if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            n => {
                return Err(invalid(
                    "page.page_size",
                    format!("{n} is out of range 1..={MAX_PAGE_SIZE}"),
                ));
            }
        };
        let after = if page.page_token.is_empty() {
            None
        } else {
            Some(decode(&page.page_token).ok_or_else(|| {
                invalid("page.page_token", "not a token returned by this list call")
            })?)
        };
        Ok(Page { size, after })
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }

    /// Cuts `rows` (fetched with [`Page::fetch_limit`]) to the page and builds the response token.
    pub fn finish<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> i64) -> (Vec<T>, PageResponse) {
        let more = rows.len() as i64 > self.size;
        rows.truncate(self.size as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => encode(key(last)),
            _ => String::new(),
        };
        (rows, PageResponse { next_page_token })
    }
}

fn encode(key: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("k1:{key}"))
}

fn decode(token: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    std::str::from_utf8(&bytes)
        .ok()?
        .strip_prefix("k1:")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_round_trip() {
        let first = Page::parse(Some(&PageRequest {
            page_size: 2,
            page_token: String::new(),
        }))
        .ok();
        let first = first.unwrap_or(Page {
            size: 0,
            after: None,
        });
        let (rows, response) = first.finish(vec![1, 2, 3], |r| *r);
        assert_eq!(rows, vec![1, 2]);
        let next = Page::parse(Some(&PageRequest {
            page_size: 2,
            page_token: response.next_page_token,
        }));
        assert_eq!(next.ok().and_then(|p| p.after), Some(2));
        let (_, last) = first.finish(vec![1], |r| *r);
        assert!(last.next_page_token.is_empty());
    }

    #[test]
    fn rejects_bad_input() {
        let bad_size = Page::parse(Some(&PageRequest {
            page_size: 501,
            page_token: String::new(),
        }));
        assert!(bad_size.is_err_and(|s| s.message().starts_with("page.page_size")));
        let bad_token = Page::parse(Some(&PageRequest {
            page_size: 0,
            page_token: "garbage".into(),
        }));
        assert!(bad_token.is_err_and(|s| s.message().starts_with("page.page_token")));
    }
}
