//! The push queue (`code_pushes`) holds exactly the pending codes and when each is due, whatever
//! statement changed them (the codes table's trigger keeps it), and activation rewrites a code
//! in place (a HOT update: no index of `mint.codes` gets an entry), which is what the queue is
//! for.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tracking_db::Taken;
use tracking_events::NewEvent;

use mint_service::domain::{Code, CodeStatus};
use mint_service::error::Error;
use mint_service::store::codes;

mod common;

use common::{code, database, enroll};

/// A row of the queue, or of a pending code as the queue should mirror it.
#[derive(QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Queued {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Bool)]
    with_code: bool,
    /// `held`, `due`, `later` or `parked` (`now()` moves on between statements).
    #[diesel(sql_type = Text)]
    state: String,
}

const STATE: &str = "case when at = 'infinity' then 'parked' when at <= now() then 'due' \
    when at > now() + interval '100 seconds' then 'held' else 'later' end as state";

/// The queue's rows, checked against the pending codes they mirror.
async fn queue(conn: &mut AsyncPgConnection) -> Vec<(i64, bool, &'static str)> {
    let load = async |conn: &mut AsyncPgConnection, sql: String| {
        let mut rows: Vec<Queued> = diesel::sql_query(sql)
            .load(conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        rows.sort();
        rows
    };
    let queued = load(
        conn,
        format!(
            "select code_id as id, with_code, {STATE} \
             from (select *, due_at as at from code_pushes) q"
        ),
    )
    .await;
    let pending = load(
        conn,
        format!(
            "select id, code is not null as with_code, {STATE} \
             from (select *, next_push_at as at from codes where status = 'pending') c"
        ),
    )
    .await;
    assert_eq!(queued, pending, "the queue mirrors the pending codes");
    let campaigns: Vec<Queued> = diesel::sql_query(
        "select q.code_id as id, true as with_code, '' as state from code_pushes q \
         join codes c on c.brand_id = q.brand_id and c.id = q.code_id \
         where c.campaign_id <> q.campaign_id",
    )
    .load(conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(campaigns.is_empty(), "each queued code under its campaign");
    queued
        .into_iter()
        .map(|row| {
            let state = match row.state.as_str() {
                "held" => "held",
                "due" => "due",
                "parked" => "parked",
                _ => "later",
            };
            (row.id, row.with_code, state)
        })
        .collect()
}

/// Reserves `rows`, held for `held_secs`.
async fn reserve(conn: &mut AsyncPgConnection, rows: &[Code], held_secs: i64) {
    let events: Vec<NewEvent> = rows
        .iter()
        .map(|row| NewEvent {
            brand_id: row.brand_id,
            kind: "CODE_EVENT_KIND_MINTED",
            payload: row.id.to_be_bytes().to_vec(),
        })
        .collect();
    let clear = vec![false; rows.len()];
    enroll(conn, rows).await;
    codes::reserve(
        conn,
        rows,
        &events,
        &clear,
        &vec![""; rows.len()],
        Taken::Fail,
        held_secs,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

fn must<T>(result: Result<T, Error>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn the_queue_holds_the_pending_codes_through_every_change() {
    let (_test_db, mut conn) = database().await;
    let link = Code {
        code: None,
        ..code(3, 3, "")
    };
    reserve(&mut conn, &[code(1, 1, "ANA"), code(2, 2, "BEA")], 120).await;
    reserve(&mut conn, &[link], 0).await;
    assert_eq!(
        queue(&mut conn).await,
        [(1, true, "held"), (2, true, "held"), (3, false, "due")]
    );

    // The pusher's scan takes the link (due) and holds it; the codes' round fails for one.
    let taken = conn
        .transaction::<_, Error, _>(async |conn| {
            let due = codes::due_for_link(conn, 10).await?;
            let until = codes::hold(conn, &[(7, 3)], 120).await?;
            Ok((due, until))
        })
        .await;
    let (due, held_until) = must(taken);
    assert_eq!(due.iter().map(|c| c.id).collect::<Vec<_>>(), [3]);
    must(codes::push_failed(&mut conn, 7, &[2], "store down", 30).await);
    assert_eq!(
        queue(&mut conn).await,
        [(1, true, "held"), (2, true, "later"), (3, false, "held")]
    );

    // Activated and linked: out of the queue.
    must(codes::set_status(&mut conn, 7, &[1], CodeStatus::Active).await);
    let links = [(3, "https://a.example/3".to_owned(), String::new())];
    must(codes::set_links(&mut conn, 7, &links, held_until).await);
    assert_eq!(queue(&mut conn).await, [(2, true, "later")]);

    // A brand's edit makes the active code pending again, due at once; a disabled one leaves.
    let active = must(codes::get(&mut conn, 7, 1, false).await).unwrap_or_else(|| panic!("1"));
    let renamed = codes::rename(
        &mut conn,
        &active,
        "ANA2",
        "",
        "manual",
        CodeStatus::Pending,
    );
    assert!(must(renamed.await).is_some());
    must(codes::set_status(&mut conn, 7, &[2], CodeStatus::Disabled).await);
    assert_eq!(queue(&mut conn).await, [(1, true, "due")]);
    assert_eq!(
        must(codes::due_for_push(&mut conn, 10).await)
            .iter()
            .map(|c| c.id)
            .collect::<Vec<_>>(),
        [1]
    );
}

#[tokio::test]
async fn pending_codes_are_listed_from_the_queue_merged_with_the_others() {
    let (_test_db, mut conn) = database().await;
    let rows: Vec<Code> = (1..=6).map(|n| code(n, n, &format!("C{n}"))).collect();
    reserve(&mut conn, &rows, 0).await;
    must(codes::set_status(&mut conn, 7, &[1, 3, 5], CodeStatus::Active).await);
    must(codes::set_status(&mut conn, 7, &[2], CodeStatus::Disabled).await);
    let list = async |conn: &mut AsyncPgConnection, status, after, creator| {
        must(codes::list(conn, 7, 1, creator, status, after, 3).await)
            .iter()
            .map(|c| (c.id, c.status.as_str()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(&mut conn, None, None, None).await,
        [(1, "active"), (2, "disabled"), (3, "active")]
    );
    assert_eq!(
        list(&mut conn, None, Some(3), None).await,
        [(4, "pending"), (5, "active"), (6, "pending")]
    );
    assert_eq!(
        list(&mut conn, Some(CodeStatus::Pending), None, None).await,
        [(4, "pending"), (6, "pending")]
    );
    assert_eq!(
        list(&mut conn, Some(CodeStatus::Pending), Some(4), None).await,
        [(6, "pending")]
    );
    assert_eq!(
        list(&mut conn, Some(CodeStatus::Pending), None, Some(6)).await,
        [(6, "pending")]
    );
    assert_eq!(
        list(&mut conn, Some(CodeStatus::Active), None, None).await,
        [(1, "active"), (3, "active"), (5, "active")]
    );
    assert_eq!(
        list(&mut conn, Some(CodeStatus::Disabled), None, None).await,
        [(2, "disabled")]
    );
}

#[tokio::test]
async fn activation_rewrites_each_code_in_place() {
    #[derive(QueryableByName)]
    struct Updates {
        #[diesel(sql_type = BigInt)]
        updated: i64,
        #[diesel(sql_type = BigInt)]
        in_place: i64,
    }
    let (_test_db, mut conn) = database().await;
    let rows: Vec<Code> = (1..=500)
        .map(|n| Code {
            affiliate_url: format!("https://shop.example/discount/CREATOR{n}?redirect=%2F"),
            destination_url: "https://shop.example/collections/summer?utm_source=creator".into(),
            ..code(n, n, &format!("CREATOR{n}"))
        })
        .collect();
    reserve(&mut conn, &rows, 120).await;
    let ids: Vec<i64> = (1..=500).collect();
    let counts = conn
        .transaction::<_, Error, _>(async |conn| {
            let activated = codes::set_status(conn, 7, &ids, CodeStatus::Active).await?;
            assert_eq!(activated.len(), 500);
            Ok(diesel::sql_query(
                "select n_tup_upd as updated, n_tup_hot_upd as in_place \
                 from pg_stat_xact_user_tables where relname = 'codes'",
            )
            .get_result::<Updates>(conn)
            .await?)
        })
        .await;
    let counts = must(counts);
    assert_eq!(counts.updated, 500);
    assert_eq!(
        counts.in_place, 500,
        "every activation a HOT update (no index entry)"
    );
    assert!(queue(&mut conn).await.is_empty());
}

#[tokio::test]
async fn a_link_sent_back_to_wait_during_its_round_is_not_activated_by_it() {
    let (_test_db, mut conn) = database().await;
    let link = Code {
        code: None,
        ..code(3, 3, "")
    };
    reserve(&mut conn, &[link], 0).await;
    // A round takes and holds the link, then asks the gateway for its tag.
    let take = async |conn: &mut AsyncPgConnection| {
        let taken = conn
            .transaction::<_, Error, _>(async |conn| {
                let due = codes::due_for_link(conn, 10).await?;
                let until = codes::hold(conn, &[(7, 3)], 120).await?;
                Ok((due.len(), until))
            })
            .await;
        must(taken)
    };
    let (taken, first_round) = take(&mut conn).await;
    assert_eq!(taken, 1);
    // Meanwhile its plan moves to another page: it waits for its tag again, due now.
    let requeue = async |conn: &mut AsyncPgConnection| {
        diesel::sql_query("update codes set next_push_at = now() where id = 3")
            .execute(conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    };
    requeue(&mut conn).await;
    // The round's answer, built from the page it read, activates nothing.
    let links = [(3, "https://old.example/3".to_owned(), String::new())];
    let set = must(codes::set_links(&mut conn, 7, &links, first_round).await);
    assert!(set.is_empty());
    assert_eq!(queue(&mut conn).await, [(3, false, "due")]);
    // Nor once another round (another replica's) has taken it again, with the new page.
    let (taken, second_round) = take(&mut conn).await;
    assert_eq!(taken, 1);
    assert!(must(codes::set_links(&mut conn, 7, &links, first_round).await).is_empty());
    let new_page = [(3, "https://new.example/3".to_owned(), String::new())];
    let set = must(codes::set_links(&mut conn, 7, &new_page, second_round).await);
    assert_eq!(
        set.iter()
            .map(|c| c.affiliate_url.as_str())
            .collect::<Vec<_>>(),
        ["https://new.example/3"]
    );
}
