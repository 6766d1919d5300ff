//! The outbox, Watch streams and consumers against a real PostgreSQL: no event lost or reordered
//! under concurrent writers, exactly-once application across consumer restarts, one active
//! consumer per stream with takeover, and each consumer's progress in its metrics.

use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::StreamExt;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracking_db::{Database, DbError, SchemaSpec, TestDb};
use tracking_events::{
    Apply, BoxFuture, ConsumerOptions, EventLog, EventStream, LogLabels, NewEvent, Source,
    SourceError, StreamLabels, append, run_consumer,
};

static SCHEMAS: &[SchemaSpec] = &[
    ("producer", &[&tracking_events::MIGRATIONS]),
    ("consumer", &[&tracking_events::MIGRATIONS]),
];

async fn append_one(db: &Database, brand_id: i64, payload: String) {
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    conn.transaction::<_, DbError, _>(async |conn| {
        append(
            conn,
            &[NewEvent {
                brand_id,
                kind: "test",
                payload: payload.into_bytes(),
            }],
        )
        .await
        .map(|_| ())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn watchers_see_every_event_in_commit_order_under_concurrent_writers() {
    let test_db = TestDb::new(SCHEMAS).await;
    let producer = test_db.pool("producer");
    let shutdown = CancellationToken::new();
    let log = EventLog::start(producer.clone(), shutdown.clone());
    // Started before any write: everything below arrives live.
    let mut watcher = Box::pin(log.watch(0, None).unwrap_or_else(|e| panic!("{e}")));
    let mut brand_two = Box::pin(log.watch(0, Some(2)).unwrap_or_else(|e| panic!("{e}")));

    let mut writers = Vec::new();
    for writer in 0..8i64 {
        let producer = producer.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..40 {
                append_one(&producer, 1 + writer % 2, format!("{writer}:{i}")).await;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap_or_else(|e| panic!("{e}"));
    }

    let mut seqs = Vec::new();
    while seqs.len() < 320 {
        match tokio::time::timeout(Duration::from_secs(10), watcher.next()).await {
            Ok(Some(Ok(event))) => seqs.push(event.seq),
            other => panic!("after {} events: {other:?}", seqs.len()),
        }
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
    assert_eq!(log.head().await.ok(), seqs.last().copied());

    let mut twos = 0;
    while twos < 160 {
        match tokio::time::timeout(Duration::from_secs(10), brand_two.next()).await {
            Ok(Some(Ok(event))) => {
                assert_eq!(event.brand_id, 2);
                twos += 1;
            }
            other => panic!("brand 2 after {twos}: {other:?}"),
        }
    }
    shutdown.cancel();
    assert!(watcher.next().await.is_none(), "watch ends on shutdown");
}

#[tokio::test]
async fn a_brand_keeps_a_bounded_number_of_watchers_and_every_brand_watchers_are_not_counted() {
    let test_db = TestDb::new(SCHEMAS).await;
    let shutdown = CancellationToken::new();
    let log = EventLog::start(test_db.pool("producer"), shutdown.clone());
    let mut open: Vec<_> = (0..tracking_events::MAX_BRAND_WATCHERS)
        .map(|_| log.watch(0, Some(7)).map(Box::pin))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    let refused = log.watch(0, Some(7)).err().map(|e| e.brand);
    assert_eq!(refused, Some(7));
    assert!(log.watch(0, Some(8)).is_ok(), "another brand's place");
    assert!(
        log.watch(0, None).is_ok(),
        "the suite's own, and operators'"
    );
    // A stream closed gives its place back.
    open.pop();
    assert!(log.watch(0, Some(7)).is_ok());
    shutdown.cancel();
}

/// A log on a schema of its own, so that other watchers in the process do not move its read
/// count, and that count; with a watcher of `brand` (every brand: `None`) followed the way a
/// consumer follows a stream, asking for the next event at once.
async fn quiet_log(
    brand: Option<i64>,
) -> (
    TestDb,
    Database,
    CancellationToken,
    prometheus_client::metrics::counter::Counter,
    tokio::sync::mpsc::UnboundedReceiver<Result<tracking_events::StoredEvent, DbError>>,
) {
    static QUIET: &[SchemaSpec] = &[("quiet", &[&tracking_events::MIGRATIONS])];
    let test_db = TestDb::new(QUIET).await;
    let db = test_db.pool("quiet");
    let shutdown = CancellationToken::new();
    let log = EventLog::start(db.clone(), shutdown.clone());
    let reads = tracking_events::stream_metrics()
        .log_reads
        .get_or_create(&LogLabels {
            schema: "quiet".to_owned(),
        })
        .clone();
    let (seen, received) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = Box::pin(log.watch(0, brand).unwrap_or_else(|e| panic!("{e}")));
    tokio::spawn(async move {
        while let Some(event) = watcher.next().await {
            if seen.send(event).is_err() {
                return;
            }
        }
    });
    (test_db, db, shutdown, reads, received)
}

#[tokio::test]
async fn a_watcher_that_has_caught_up_reads_again_only_when_a_commit_wakes_it() {
    let (_test_db, db, shutdown, reads, mut received) = quiet_log(None).await;
    let before = reads.get();
    let commits = 30;
    for i in 0..commits {
        append_one(&db, 1, format!("q{i}")).await;
        match tokio::time::timeout(Duration::from_secs(10), received.recv()).await {
            Ok(Some(Ok(event))) => assert_eq!(event.payload, format!("q{i}").into_bytes()),
            other => panic!("event {i}: {other:?}"),
        }
        // Time for a watcher that would read again at once to do so.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One read per commit, and a few for the start (the first read, the listener's connect).
    // A watcher that re-read after every short page would have made twice as many.
    let made = reads.get() - before;
    assert!(
        (commits..=commits + 3).contains(&made),
        "{made} reads for {commits} commits"
    );
    shutdown.cancel();
}

/// A brand's watcher is woken by every commit but reads only for its brand's (the NOTIFY names
/// them): hundreds of brands' open streams would otherwise each read the log at every commit of
/// any brand, on the service's pool.
#[tokio::test]
async fn a_brands_watcher_reads_again_only_for_its_brands_commits() {
    let (_test_db, db, shutdown, reads, mut received) = quiet_log(Some(1)).await;
    let mut next =
        async || match tokio::time::timeout(Duration::from_secs(10), received.recv()).await {
            Ok(Some(Ok(event))) => event,
            other => panic!("{other:?}"),
        };
    append_one(&db, 1, "first".to_owned()).await;
    assert_eq!(next().await.payload, b"first");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = reads.get();
    // Other brands' commits, one at a time, and one of many brands at once (more than a NOTIFY
    // names: it wakes every watcher).
    for i in 0..20 {
        append_one(&db, 2 + i % 3, format!("other {i}")).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(reads.get(), before, "no read for other brands' commits");
    let many: Vec<NewEvent> = (0..=tracking_events::MAX_NOTIFIED_BRANDS as i64)
        .map(|n| NewEvent {
            brand_id: 100 + n,
            kind: "test",
            payload: Vec::new(),
        })
        .collect();
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    conn.transaction::<_, DbError, _>(async |conn| append(conn, &many).await.map(|_| ()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(reads.get(), before + 1, "a commit of every brand is read");
    // Its own brand's commit among others' is read, and is the next event it sees.
    append_one(&db, 1, "second".to_owned()).await;
    assert_eq!(next().await.payload, b"second");
    assert_eq!(reads.get(), before + 2);
    shutdown.cancel();
}

/// Reads the producer's log in-process (in the suite, a gRPC Watch stream plays this part).
struct LogSource(EventLog);

impl Source for LogSource {
    type Event = Vec<u8>;
    fn open(&mut self, after_seq: i64) -> BoxFuture<'_, Result<EventStream<Vec<u8>>, SourceError>> {
        let stream = self.0.watch(after_seq, None).map(|events| {
            events
                .map(|item| {
                    item.map(|e| (e.seq, e.payload))
                        .map_err(|e| Box::new(e) as SourceError)
                })
                .boxed()
        });
        Box::pin(async move { stream.map_err(|e| Box::new(e) as SourceError) })
    }
}

/// Records each event with the consumer that applied it; a second application of the same seq
/// would violate the primary key and fail the batch.
struct Recorder(&'static str);

impl Apply<Vec<u8>> for Recorder {
    fn apply<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        seq: i64,
        event: &'a Vec<u8>,
    ) -> BoxFuture<'a, Result<(), DbError>> {
        Box::pin(async move {
            diesel::sql_query("insert into applied (seq, payload, applied_by) values ($1, $2, $3)")
                .bind::<BigInt, _>(seq)
                .bind::<Text, _>(String::from_utf8_lossy(event).into_owned())
                .bind::<Text, _>(self.0)
                .execute(conn)
                .await?;
            Ok(())
        })
    }
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName, Debug)]
struct By {
    #[diesel(sql_type = Text)]
    applied_by: String,
}

async fn count(db: &Database) -> i64 {
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    diesel::sql_query("select count(*) as n from applied")
        .get_result::<Count>(&mut conn)
        .await
        .map(|c| c.n)
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn wait_for(db: &Database, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while count(db).await < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} applied",
            count(db).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn setup() -> (TestDb, Database, Database, EventLog, CancellationToken) {
    let test_db = TestDb::new(SCHEMAS).await;
    let producer = test_db.pool("producer");
    let consumer = test_db.pool("consumer");
    let mut conn = consumer.conn().await.unwrap_or_else(|e| panic!("{e}"));
    diesel::sql_query("create table applied (seq bigint primary key, payload text not null, applied_by text not null)")
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let log = EventLog::start(producer.clone(), shutdown.clone());
    (test_db, producer, consumer, log, shutdown)
}

fn options() -> ConsumerOptions {
    ConsumerOptions {
        standby_retry: Duration::from_millis(100),
        ..ConsumerOptions::new("producer-events")
    }
}

#[tokio::test]
async fn consumers_apply_exactly_once_across_restarts() {
    let (_test_db, producer, consumer, log, shutdown) = setup().await;
    for i in 0..300 {
        append_one(&producer, 1, format!("e{i}")).await;
    }
    for round in 0..3 {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_consumer(
            consumer.clone(),
            options(),
            LogSource(log.clone()),
            Recorder("only"),
            stop.clone(),
        ));
        wait_for(&consumer, 100 * (round + 1)).await;
        // Stopped mid-stream, possibly between batches.
        stop.cancel();
        task.await.unwrap_or_else(|e| panic!("{e}"));
        for i in 0..50 {
            append_one(&producer, 1, format!("r{round}-{i}")).await;
        }
    }
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_consumer(
        consumer.clone(),
        options(),
        LogSource(log.clone()),
        Recorder("only"),
        stop.clone(),
    ));
    wait_for(&consumer, 450).await;
    stop.cancel();
    task.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&consumer).await, 450);

    #[derive(QueryableByName)]
    struct Cursor {
        #[diesel(sql_type = BigInt)]
        seq: i64,
    }
    let mut conn = consumer.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let cursor: Cursor =
        diesel::sql_query("select seq from stream_cursors where stream = 'producer-events'")
            .get_result(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(Some(cursor.seq), log.head().await.ok());
    shutdown.cancel();
}

#[tokio::test]
async fn one_consumer_is_active_and_a_standby_takes_over() {
    let (_test_db, producer, consumer, log, shutdown) = setup().await;
    let stop_a = CancellationToken::new();
    let stop_b = CancellationToken::new();
    let a = tokio::spawn(run_consumer(
        consumer.clone(),
        options(),
        LogSource(log.clone()),
        Recorder("a"),
        stop_a.clone(),
    ));
    // Let `a` take the lock first so the roles are known.
    for i in 0..20 {
        append_one(&producer, 1, format!("first{i}")).await;
    }
    wait_for(&consumer, 20).await;
    let b = tokio::spawn(run_consumer(
        consumer.clone(),
        options(),
        LogSource(log.clone()),
        Recorder("b"),
        stop_b.clone(),
    ));
    for i in 0..100 {
        append_one(&producer, 1, format!("both{i}")).await;
    }
    wait_for(&consumer, 120).await;

    let by = |db: Database| async move {
        let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        diesel::sql_query("select distinct applied_by from applied order by applied_by")
            .load::<By>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|b| b.applied_by)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        by(consumer.clone()).await,
        vec!["a"],
        "only the lock holder applies"
    );

    // The active consumer goes away; the standby resumes from the stored cursor.
    stop_a.cancel();
    a.await.unwrap_or_else(|e| panic!("{e}"));
    for i in 0..30 {
        append_one(&producer, 1, format!("after{i}")).await;
    }
    wait_for(&consumer, 150).await;
    stop_b.cancel();
    b.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&consumer).await, 150);
    assert_eq!(by(consumer.clone()).await, vec!["a", "b"]);
    shutdown.cancel();
}

#[tokio::test]
async fn a_consumers_progress_is_in_the_metrics() {
    let (_test_db, producer, consumer, log, shutdown) = setup().await;
    // A stream name of its own, so other tests in the process do not move these figures.
    let options = ConsumerOptions {
        standby_retry: Duration::from_millis(100),
        ..ConsumerOptions::new("metered-events")
    };
    let labels = StreamLabels::new("consumer", "metered-events");
    let metrics = tracking_events::stream_metrics();
    for i in 0..120 {
        append_one(&producer, 1, format!("m{i}")).await;
    }
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_consumer(
        consumer.clone(),
        options,
        LogSource(log.clone()),
        Recorder("metered"),
        stop.clone(),
    ));
    wait_for(&consumer, 120).await;
    let head = log.head().await.unwrap_or_else(|e| panic!("{e}"));
    // The cursor's commit and the figures' update are a moment apart.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.cursor.get_or_create(&labels).get() < head {
        assert!(
            tokio::time::Instant::now() < deadline,
            "cursor metric behind"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(metrics.applied.get_or_create(&labels).get(), 120);
    assert_eq!(metrics.active.get_or_create(&labels).get(), 1);

    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text.contains(
            r#"stream_events_applied_total{schema="consumer",stream="metered-events"} 120"#
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"stream_cursor{{schema="consumer",stream="metered-events"}} {head}"#
        )),
        "{text}"
    );
    assert!(
        text.contains(
            r#"stream_batch_duration_seconds_count{schema="consumer",stream="metered-events"}"#
        ),
        "{text}"
    );

    stop.cancel();
    task.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(metrics.active.get_or_create(&labels).get(), 0);
    shutdown.cancel();
}

#[tokio::test]
async fn a_watcher_still_replaying_ends_at_shutdown() {
    let (_test_db, producer, _consumer, log, shutdown) = setup().await;
    for i in 0..3 {
        append_one(&producer, 1, format!("e{i}")).await;
    }
    let mut watch = Box::pin(log.watch(0, None).unwrap_or_else(|e| panic!("{e}")));
    assert!(matches!(watch.next().await, Some(Ok(_))));
    shutdown.cancel();
    // Two events are left to replay: the stream ends all the same.
    assert!(watch.next().await.is_none());
}

/// Fails on the event `poison`, as an apply with a bug would; records the rest.
struct Fussy;

impl Apply<Vec<u8>> for Fussy {
    fn apply<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        seq: i64,
        event: &'a Vec<u8>,
    ) -> BoxFuture<'a, Result<(), DbError>> {
        Box::pin(async move {
            if event.as_slice() == b"poison" {
                return Err(DbError::Other("cannot apply this event".to_owned()));
            }
            Recorder("fussy").apply(conn, seq, event).await
        })
    }
}

#[tokio::test]
async fn a_consumer_stuck_on_an_event_shows_in_its_interruptions() {
    let (_test_db, producer, consumer, log, shutdown) = setup().await;
    // A stream name of its own, so other tests in the process do not move these figures.
    let labels = StreamLabels::new("consumer", "stuck-events");
    let interruptions = tracking_events::stream_metrics()
        .interruptions
        .get_or_create(&labels)
        .clone();
    append_one(&producer, 1, "fine".to_owned()).await;
    append_one(&producer, 1, "poison".to_owned()).await;
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_consumer(
        consumer.clone(),
        ConsumerOptions {
            batch: 1,
            ..ConsumerOptions::new("stuck-events")
        },
        LogSource(log.clone()),
        Fussy,
        stop.clone(),
    ));
    wait_for(&consumer, 1).await;
    // It applies what comes before the event, then fails on it again and again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while interruptions.get() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no interruption counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&consumer).await, 1);
    stop.cancel();
    task.await.unwrap_or_else(|e| panic!("{e}"));
    shutdown.cancel();
}
