//! A brand's edit of a code while the store renames its discount (`code_renames`): the code is
//! parked out of the pusher's scans, one edit at a time, put back when the store refuses, and
//! an edit whose hold ran out is taken over once; then each kind of answer from the store, as
//! the edit records it (`edits::record_in`).

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tracking_db::Taken;
use tracking_events::NewEvent;

use mint_service::domain::{Code, CodeStatus, Failure};
use mint_service::edits;
use mint_service::error::Error;
use mint_service::pusher::Outcome;
use mint_service::store::renames::{self, Rename};
use mint_service::store::{codes, failures};

mod common;

use common::{code, database, enroll};

/// Mints `text` for `creator` (brand 7, campaign 1, integration 1) and returns the stored code.
async fn minted(conn: &mut AsyncPgConnection, id: i64, creator: i64, text: &str) -> Code {
    let row = Code {
        affiliate_url: format!("https://shop.example/?code={text}"),
        ..code(id, creator, text)
    };
    let event = NewEvent {
        brand_id: 7,
        kind: "CODE_EVENT_KIND_MINTED",
        payload: text.as_bytes().to_vec(),
    };
    enroll(conn, std::slice::from_ref(&row)).await;
    codes::reserve(conn, &[row], &[event], &[false], &[""], Taken::Fail, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stored(conn, id).await
}

async fn stored(conn: &mut AsyncPgConnection, id: i64) -> Code {
    codes::get(conn, 7, id, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("code {id} is stored"))
}

/// Renames `code` to `to` as `UpdateCode` does and starts its edit, held for `held_secs`; `None`
/// when an edit of the code is already being made.
async fn edit(
    conn: &mut AsyncPgConnection,
    code: &Code,
    to: &str,
    held_secs: i64,
) -> Option<(Code, Rename)> {
    let code = code.clone();
    let to = to.to_owned();
    conn.transaction::<_, Error, _>(async |conn| {
        let renamed = codes::rename(
            conn,
            &code,
            &to,
            &format!("https://shop.example/?code={to}"),
            "manual",
            CodeStatus::Pending,
        )
        .await?
        .unwrap_or_else(|| panic!("{to} is free"));
        // As `UpdateCode`: a refused start rolls the rename back.
        let rename = renames::begin(conn, &code, held_secs)
            .await?
            .ok_or_else(|| Error::FailedPrecondition("being edited".into()))?;
        Ok((renamed, rename))
    })
    .await
    .map_err(|e| assert!(matches!(e, Error::FailedPrecondition(_)), "{e}"))
    .ok()
}

/// Edits `code` to `to` as a process that stopped before the store answered left it (held for no
/// time), then takes the edit over as the pusher's round does: the code as sent, the stopped
/// process's edit, and the one edit taken over.
async fn taken_over(conn: &mut AsyncPgConnection, code: &Code, to: &str) -> (Code, Rename, Rename) {
    let (sent, rename) = edit(conn, code, to, 0)
        .await
        .unwrap_or_else(|| panic!("the edit starts"));
    let mut taken = renames::take_abandoned(conn, 10, 120)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(taken.len(), 1);
    (sent, rename, taken.remove(0))
}

#[derive(QueryableByName)]
struct Due {
    #[diesel(sql_type = Text)]
    what: String,
}

/// Whether the pusher's scan could take code `id`: `parked` (waiting for its edit) or `due`.
async fn push_state(conn: &mut AsyncPgConnection, id: i64) -> String {
    let rows: Vec<Due> = diesel::sql_query(
        "select case when next_push_at = 'infinity' then 'parked' \
           when next_push_at <= now() then 'due' else 'later' end as what \
         from codes where brand_id = 7 and id = $1",
    )
    .bind::<BigInt, _>(id)
    .load(conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    rows.into_iter().map(|r| r.what).collect()
}

#[tokio::test]
async fn an_edit_parks_its_code_one_at_a_time_and_a_refusal_puts_everything_back() {
    let (_db, mut conn) = database().await;
    let before = minted(&mut conn, 1, 1, "ANNA").await;
    let before = codes::set_status(&mut conn, 7, &[before.id], CodeStatus::Active)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .remove(0);

    let (renamed, rename) = edit(&mut conn, &before, "ANNAVIP", 120)
        .await
        .unwrap_or_else(|| panic!("the first edit starts"));
    assert_eq!(renamed.code.as_deref(), Some("ANNAVIP"));
    assert_eq!(renamed.status, CodeStatus::Pending);
    assert_eq!(
        (rename.previous_code.as_str(), rename.previous_status()),
        ("ANNA", CodeStatus::Active)
    );
    assert_eq!(push_state(&mut conn, before.id).await, "parked");

    // A second edit while the first is made at the store is refused (its rename rolled back).
    assert!(edit(&mut conn, &renamed, "ANNA2", 120).await.is_none());
    assert_eq!(
        stored(&mut conn, before.id).await.code.as_deref(),
        Some("ANNAVIP")
    );
    // Nothing abandoned while the edit's hold runs.
    let abandoned = renames::take_abandoned(&mut conn, 10, 120)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(abandoned.is_empty(), "{abandoned:?}");

    // The store refused: the code has what it had, its history without the edit.
    let back = codes::put_back(&mut conn, &renamed, &rename)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("ANNA is free"));
    assert_eq!(
        (back.code.as_deref(), back.status, back.history.len()),
        (Some("ANNA"), CodeStatus::Active, 0)
    );
    assert_eq!(back.affiliate_url, before.affiliate_url);
    assert!(
        renames::end(&mut conn, &rename)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert!(
        !renames::end(&mut conn, &rename)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    // The next edit may start.
    assert!(edit(&mut conn, &back, "ANNA3", 120).await.is_some());
}

#[tokio::test]
async fn an_abandoned_edit_is_taken_over_once_and_put_back_only_while_its_old_text_is_free() {
    let (_db, mut conn) = database().await;
    let pending = minted(&mut conn, 1, 1, "BO").await;
    let (renamed, rename, taken) = taken_over(&mut conn, &pending, "BOVIP").await;
    assert!(taken.held_until > rename.held_until);
    let again = renames::take_abandoned(&mut conn, 10, 120)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        again.is_empty(),
        "held by the round that took it: {again:?}"
    );
    // The stopped process's hold is no longer the edit's.
    assert!(
        !renames::end(&mut conn, &rename)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );

    // Another creator got the old text meanwhile: it cannot be put back.
    minted(&mut conn, 2, 2, "bo").await;
    let back = codes::put_back(&mut conn, &renamed, &taken)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(back.is_none());
    assert_eq!(stored(&mut conn, 1).await.code.as_deref(), Some("BOVIP"));
    assert!(
        renames::end(&mut conn, &taken)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(conn)
        .await
        .map(|c| c.n)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The codes the `CHANGED` events announce, in order: text, status and how many changes of its
/// history.
async fn announced(conn: &mut AsyncPgConnection) -> Vec<String> {
    #[derive(QueryableByName)]
    struct Payload {
        #[diesel(sql_type = diesel::sql_types::Binary)]
        payload: Vec<u8>,
    }
    diesel::sql_query(
        "select payload from events where kind = 'CODE_EVENT_KIND_CHANGED' order by seq",
    )
    .load::<Payload>(conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .into_iter()
    .map(|row| {
        let code =
            <tracking_api::mint::v1::CodeEvent as prost::Message>::decode(row.payload.as_slice())
                .unwrap_or_else(|e| panic!("{e}"))
                .code
                .unwrap_or_default();
        let status = tracking_api::mint::v1::CodeStatus::try_from(code.status)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("CODE_STATUS_")
                    .to_lowercase()
            })
            .unwrap_or_default();
        format!("{} {status}, {} changes", code.code, code.history.len())
    })
    .collect()
}

/// What the code's edits left behind: `CHANGED` events, texts queued for deactivation at the
/// store (in order), and edits still being made.
async fn left(conn: &mut AsyncPgConnection) -> (i64, Vec<String>, i64) {
    #[derive(QueryableByName)]
    struct Queued {
        #[diesel(sql_type = Text)]
        code: String,
    }
    let changed = count(
        conn,
        "select count(*) as n from events where kind = 'CODE_EVENT_KIND_CHANGED'",
    )
    .await;
    let queued: Vec<Queued> = diesel::sql_query("select code from store_disables order by code")
        .load(conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let editing = count(conn, "select count(*) as n from code_renames").await;
    (
        changed,
        queued.into_iter().map(|q| q.code).collect(),
        editing,
    )
}

/// Code 1 (`ANNA`, active) being edited to `ANNAVIP`: the code as sent to the store, and its edit.
async fn being_edited(conn: &mut AsyncPgConnection) -> (Code, Rename) {
    let before = minted(conn, 1, 1, "ANNA").await;
    let before = codes::set_status(conn, 7, &[before.id], CodeStatus::Active)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .remove(0);
    edit(conn, &before, "ANNAVIP", 120)
        .await
        .unwrap_or_else(|| panic!("the edit starts"))
}

/// Records `outcome` for the edit as `UpdateCode` does, in a transaction.
async fn record(
    conn: &mut AsyncPgConnection,
    sent: &Code,
    rename: &Rename,
    outcome: Outcome,
) -> Result<Code, Error> {
    conn.transaction::<_, Error, _>(async |conn| {
        edits::record_in(conn, "https://t.example", sent, rename, outcome).await
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn created(id: i64) -> Outcome {
    Outcome {
        created: vec![id],
        ..Outcome::default()
    }
}

/// The store could not be reached about code `id`.
fn store_down(id: i64) -> Outcome {
    Outcome {
        failed: vec![(vec![id], "store down".to_owned(), 2)],
        ..Outcome::default()
    }
}

/// Takes the due deactivations as a round does.
async fn take_disables(conn: &mut AsyncPgConnection) -> Vec<String> {
    conn.transaction::<_, Error, _>(async |conn| codes::take_store_disables(conn, 10, 60).await)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|taken| taken.code)
        .collect()
}

#[tokio::test]
async fn an_edit_the_store_made_is_active_and_announced() {
    let (_db, mut conn) = database().await;
    let (sent, rename) = being_edited(&mut conn).await;
    let code = record(&mut conn, &sent, &rename, created(sent.id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (code.code.as_deref(), code.status),
        (Some("ANNAVIP"), CodeStatus::Active)
    );
    // Renamed in place: the old text is gone from the store, nothing to deactivate.
    assert_eq!(left(&mut conn).await, (1, vec![], 0));
}

#[tokio::test]
async fn an_edit_the_store_made_ends_the_failure_its_refusal_left() {
    let (_db, mut conn) = database().await;
    let (sent, rename) = being_edited(&mut conn).await;
    // The store had refused the creator's code for good: a failure the brand sees.
    let refused = Failure::StoreError("code not allowed".to_owned());
    failures::record(&mut conn, (7, sent.campaign_id, sent.creator_id), &refused)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    record(&mut conn, &sent, &rename, created(sent.id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let failure = failures::get(&mut conn, (7, sent.campaign_id, sent.creator_id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        failure.is_none(),
        "the creator's failure stays: {failure:?}"
    );
}

#[tokio::test]
async fn an_edit_the_store_could_not_make_waits_for_the_pusher() {
    let (_db, mut conn) = database().await;
    let (sent, rename) = being_edited(&mut conn).await;
    let code = record(&mut conn, &sent, &rename, store_down(sent.id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (code.code.as_deref(), code.status, code.store_error.as_str()),
        (Some("ANNAVIP"), CodeStatus::Pending, "store down")
    );
    assert_eq!(push_state(&mut conn, sent.id).await, "later");
    assert_eq!(left(&mut conn).await, (1, vec!["ANNA".to_owned()], 0));
}

/// Once the store disabled the text an edit left there, the edit's history entry says when;
/// only once, and not for a text no edit of the code left.
#[tokio::test]
async fn a_former_text_disabled_at_the_store_is_recorded_released_once() {
    let (_db, mut conn) = database().await;
    let (sent, rename) = being_edited(&mut conn).await;
    record(&mut conn, &sent, &rename, store_down(sent.id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let taken = conn
        .transaction::<_, Error, _>(async |conn| codes::take_store_disables(conn, 10, 60).await)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(taken.len(), 1);
    let done = codes::store_disable_done(&mut conn, &taken[0])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(done);
    assert!(
        !codes::store_disable_done(&mut conn, &taken[0])
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        "forgotten already"
    );
    let released = codes::former_text_released(&mut conn, 7, sent.id, "anna")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("the edit's entry is marked"));
    let edit = released
        .history
        .last()
        .cloned()
        .unwrap_or_else(|| panic!("an entry"));
    assert_eq!((edit.from.as_str(), edit.to.as_str()), ("ANNA", "ANNAVIP"));
    assert!(edit.released_at.is_some_and(|at| at >= edit.at));
    assert_eq!(
        released.updated_at,
        stored(&mut conn, sent.id).await.updated_at
    );
    for text in ["ANNA", "ANNAVIP"] {
        assert!(
            codes::former_text_released(&mut conn, 7, sent.id, text)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none(),
            "{text}: recorded already, or no edit left it"
        );
    }
}

/// A disable of the text a code has again (edited away and back, each made at the store at
/// once) releases no former text.
#[tokio::test]
async fn a_disable_of_a_text_the_code_has_again_releases_nothing() {
    let (_db, mut conn) = database().await;
    let (sent, rename) = being_edited(&mut conn).await;
    let vip = record(&mut conn, &sent, &rename, created(sent.id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (back, rename) = edit(&mut conn, &vip, "ANNA", 120)
        .await
        .unwrap_or_else(|| panic!("the edit back starts"));
    let anna = record(&mut conn, &back, &rename, created(back.id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(anna.code.as_deref(), Some("ANNA"));
    assert!(
        codes::former_text_released(&mut conn, 7, anna.id, "ANNA")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    assert!(
        stored(&mut conn, anna.id)
            .await
            .history
            .iter()
            .all(|change| change.released_at.is_none())
    );
}

#[tokio::test]
async fn an_edit_the_store_refuses_puts_the_code_back_and_announces_it_as_it_is() {
    let (_db, mut conn) = database().await;
    let (sent, rename) = being_edited(&mut conn).await;
    let outcome = Outcome {
        collided: vec![sent.clone()],
        ..Outcome::default()
    };
    let refused = record(&mut conn, &sent, &rename, outcome).await;
    assert!(
        matches!(&refused, Err(Error::AlreadyExists(why)) if why.contains("ANNAVIP")),
        "{refused:?}"
    );
    let back = stored(&mut conn, sent.id).await;
    assert_eq!(
        (back.code.as_deref(), back.status, back.history.len()),
        (Some("ANNA"), CodeStatus::Active, 0)
    );
    // Announced as it is back (had the code been announced with the refused text meanwhile,
    // this sets it right; otherwise it changes nothing downstream).
    assert_eq!(left(&mut conn).await, (1, vec![], 0));
    assert_eq!(announced(&mut conn).await, ["ANNA active, 0 changes"]);

    // Refused for good, and the old text taken meanwhile: the code keeps the new text, waiting
    // for the pusher (which meets the same answer), and the old text is deactivated.
    let (sent, rename) = edit(&mut conn, &back, "ANNA2", 120)
        .await
        .unwrap_or_else(|| panic!("the edit starts"));
    minted(&mut conn, 2, 2, "ANNA").await;
    let outcome = Outcome {
        refused_for_good: vec![(sent.clone(), "invalid code".to_owned())],
        ..Outcome::default()
    };
    let refused = record(&mut conn, &sent, &rename, outcome).await;
    assert!(
        matches!(&refused, Err(Error::FailedPrecondition(why)) if why.contains("invalid code") && why.contains("keeps ANNA2")),
        "{refused:?}"
    );
    let kept = stored(&mut conn, sent.id).await;
    assert_eq!(
        (kept.code.as_deref(), kept.status),
        (Some("ANNA2"), CodeStatus::Pending)
    );
    assert_eq!(left(&mut conn).await, (2, vec!["ANNA".to_owned()], 0));
}

/// A Shopify discount link put back after a refused edit sends the shopper to the plan's page as
/// it is now: the page moved while the store was asked (the projection gave the code's link the
/// new one).
#[tokio::test]
async fn a_discount_link_put_back_keeps_the_plans_page_as_it_moved_during_the_edit() {
    let (_db, mut conn) = database().await;
    let (sent, mut rename) = being_edited(&mut conn).await;
    rename.previous_affiliate_url =
        "https://s.myshopify.com/discount/ANNA?redirect=%2Fsummer".to_owned();
    // As the projection follows a plan's new page (announcing the code as it is, ANNAVIP).
    diesel::sql_query(
        "update codes set affiliate_url = \
           'https://s.myshopify.com/discount/ANNAVIP?redirect=%2Fautumn', updated_at = now() \
         where brand_id = 7 and id = $1",
    )
    .bind::<BigInt, _>(sent.id)
    .execute(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let outcome = Outcome {
        collided: vec![sent.clone()],
        ..Outcome::default()
    };
    let refused = record(&mut conn, &sent, &rename, outcome).await;
    assert!(
        matches!(&refused, Err(Error::AlreadyExists(_))),
        "{refused:?}"
    );
    let back = stored(&mut conn, sent.id).await;
    assert_eq!(
        (back.code.as_deref(), back.affiliate_url.as_str()),
        (
            Some("ANNA"),
            "https://s.myshopify.com/discount/ANNA?redirect=%2Fautumn"
        )
    );
    // Announced with the refused text meanwhile, the code is announced again as it is back.
    assert_eq!(announced(&mut conn).await, ["ANNA active, 0 changes"]);
}

#[tokio::test]
async fn a_code_disabled_during_its_edit_has_whatever_the_store_holds_deactivated() {
    let (_db, mut conn) = database().await;
    let (sent, rename) = being_edited(&mut conn).await;
    codes::set_status(&mut conn, 7, &[sent.id], CodeStatus::Disabled)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The store renamed its discount: the new text is what it holds.
    let code = record(&mut conn, &sent, &rename, created(sent.id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code.status, CodeStatus::Disabled);
    assert_eq!(left(&mut conn).await, (0, vec!["ANNAVIP".to_owned()], 0));

    // Not renamed (the store down): the old text is what it holds.
    let other = minted(&mut conn, 3, 3, "BO").await;
    let (sent, rename) = edit(&mut conn, &other, "BOVIP", 120)
        .await
        .unwrap_or_else(|| panic!("the edit starts"));
    codes::set_status(&mut conn, 7, &[sent.id], CodeStatus::Disabled)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    record(&mut conn, &sent, &rename, store_down(sent.id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        left(&mut conn).await,
        (0, vec!["ANNAVIP".to_owned(), "BO".to_owned()], 0)
    );
}

#[tokio::test]
async fn an_answer_for_an_edit_another_round_took_over_changes_nothing() {
    let (_db, mut conn) = database().await;
    let before = minted(&mut conn, 1, 1, "CY").await;
    let (sent, rename, _) = taken_over(&mut conn, &before, "CYVIP").await;
    let code = record(&mut conn, &sent, &rename, created(sent.id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (code.code.as_deref(), code.status),
        (Some("CYVIP"), CodeStatus::Pending)
    );
    assert_eq!(left(&mut conn).await, (0, vec![], 1));
}

#[tokio::test]
async fn a_text_queued_for_deactivation_that_another_code_holds_now_is_left_alone() {
    let (_db, mut conn) = database().await;
    // Three codes edited while their store was down: the old texts wait for deactivation.
    for (id, text) in [(1, "ANA20"), (2, "BO20"), (3, "CY20")] {
        let before = minted(&mut conn, id, id, text).await;
        let (sent, rename) = edit(&mut conn, &before, &format!("{text}VIP"), 120)
            .await
            .unwrap_or_else(|| panic!("the edit starts"));
        record(&mut conn, &sent, &rename, store_down(sent.id))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(
        left(&mut conn).await.1,
        vec!["ANA20".to_owned(), "BO20".to_owned(), "CY20".to_owned()]
    );
    // Meanwhile the freed texts went to other creators: `ana20` made at the store for code 11
    // (so the store had no `ANA20` of code 1's left), `BO20` still waiting for its push.
    let ana = minted(&mut conn, 11, 11, "ana20").await;
    codes::set_status(&mut conn, 7, &[ana.id], CodeStatus::Active)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    minted(&mut conn, 12, 12, "BO20").await;

    // Only the text nobody holds goes to the store; code 11's is its own there, so nothing is
    // left to deactivate; code 12's waits for its push.
    assert_eq!(take_disables(&mut conn).await, vec!["CY20"]);
    assert_eq!(
        left(&mut conn).await.1,
        vec!["BO20".to_owned(), "CY20".to_owned()]
    );
    let waiting = count(
        &mut conn,
        "select count(*) as n from store_disables where code = 'BO20' \
         and last_error like 'code 12 holds this text now%' and next_at > now()",
    )
    .await;
    assert_eq!(waiting, 1);

    // Once code 12 is disabled, the text is nobody's live code: deactivated at the store.
    codes::set_status(&mut conn, 7, &[12], CodeStatus::Disabled)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    diesel::sql_query("update store_disables set next_at = now() where code = 'BO20'")
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(take_disables(&mut conn).await, vec!["BO20"]);
}

/// A rename to a text another session is minting: the rename's `not exists` cannot see the
/// uncommitted code, so it waits on the unique index; once the mint commits, the rename answers
/// that the text is taken, and its own transaction goes on (not aborted by the violation).
#[tokio::test]
async fn a_rename_racing_a_mint_of_the_same_text_answers_taken_and_its_transaction_goes_on() {
    let (db, mut conn) = database().await;
    let anna = minted(&mut conn, 1, 1, "ANNA").await;
    let zed = code(2, 2, "ZED");
    enroll(&mut conn, std::slice::from_ref(&zed)).await;
    let mut minting = db
        .pool(mint_service::SCHEMA)
        .conn()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    diesel::sql_query("begin")
        .execute(&mut minting)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let event = NewEvent {
        brand_id: 7,
        kind: "CODE_EVENT_KIND_MINTED",
        payload: b"ZED".to_vec(),
    };
    codes::reserve(
        &mut minting,
        &[zed],
        &[event],
        &[false],
        &[""],
        Taken::Fail,
        0,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let mut renaming = db
        .pool(mint_service::SCHEMA)
        .conn()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rename = tokio::spawn(async move {
        renaming
            .transaction::<_, Error, _>(async |conn| {
                let renamed = codes::rename(
                    conn,
                    &anna,
                    "zed",
                    "https://shop.example/?code=zed",
                    "store_collision",
                    CodeStatus::Pending,
                )
                .await?;
                // The transaction is still usable.
                let still = codes::get(conn, 7, anna.id, false).await?;
                Ok((renamed, still.and_then(|c| c.code)))
            })
            .await
    });
    // The rename waits on the minting session's uncommitted code.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while waiting_on_locks(&mut conn).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the rename did not wait"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    diesel::sql_query("commit")
        .execute(&mut minting)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let answered = rename
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("the rename failed: {e}"));
    assert_eq!(
        (answered.0.is_none(), answered.1.as_deref()),
        (true, Some("ANNA")),
        "taken, and the code kept its text"
    );
}

/// Sessions of this database waiting on a lock.
async fn waiting_on_locks(conn: &mut AsyncPgConnection) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(
        "select count(*)::bigint as n from pg_stat_activity \
         where datname = current_database() and wait_event_type = 'Lock'",
    )
    .get_result::<Count>(conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .n
}
