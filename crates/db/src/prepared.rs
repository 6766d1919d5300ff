//! Raw SQL that each connection prepares once. `diesel::sql_query` marks its statement unsafe to
//! cache, so diesel-async prepares it again at every execution, in a round trip of its own before
//! the one that runs it (PostgreSQL parses and plans it each time). The hot paths' statements are
//! fixed text with typed binds, which is what a prepared statement is for: [`prepared`] is
//! `sql_query` for such text, kept in each connection's statement cache under its text and bind
//! types.

use std::borrow::Cow;
use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};
use diesel::{QueryResult, RunQueryDsl};

/// A fixed statement with `$1`, `$2`, … parameters (each may appear more than once, in any
/// order), prepared once per connection. Bind the parameters in order with [`Prepared::bind`] and
/// run it as a `sql_query` (rows are read by name). A `$` followed by a digit is a parameter
/// wherever it stands, so the text must not have one inside a literal. Each connection keeps
/// every distinct text it ran: build the text from constants only, never from values.
pub fn prepared<'f>(sql: impl Into<Cow<'static, str>>) -> Prepared<'f> {
    Prepared {
        sql: sql.into(),
        binds: Vec::new(),
        kept: true,
    }
}

/// See [`prepared`].
#[must_use = "a statement runs only when executed or loaded"]
pub struct Prepared<'f> {
    sql: Cow<'static, str>,
    binds: Vec<Box<dyn QueryFragment<Pg> + Send + 'f>>,
    /// Kept in the connection's statement cache.
    kept: bool,
}

impl std::fmt::Debug for Prepared<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("sql", &self.sql)
            .field("binds", &self.binds.len())
            .finish()
    }
}

impl<'f> Prepared<'f> {
    /// Not kept: prepared again at each execution, as `sql_query` is, so PostgreSQL plans it each
    /// time for the tables as they are, even on a connection that plans kept statements once
    /// ([`crate::PoolOptions::generic_plans`]). For a statement whose right plan depends on the
    /// tables' sizes.
    pub fn planned_each_time(mut self) -> Self {
        self.kept = false;
        self
    }

    /// Binds the next parameter (`$1` first), as `SqlQuery::bind`.
    pub fn bind<ST, V>(mut self, value: V) -> Self
    where
        Pg: HasSqlType<ST>,
        V: ToSql<ST, Pg> + Send + 'f,
        ST: Send + 'f,
    {
        self.binds.push(Box::new(Bind::<ST, V> {
            value,
            sql_type: PhantomData,
        }));
        self
    }
}

struct Bind<ST, V> {
    value: V,
    sql_type: PhantomData<ST>,
}

impl<ST, V> QueryFragment<Pg> for Bind<ST, V>
where
    Pg: HasSqlType<ST>,
    V: ToSql<ST, Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<ST, V>(&self.value)
    }
}

/// The text split at its parameters: `(text before, parameter number)` pairs, then the rest.
fn pieces(sql: &str) -> (Vec<(&str, usize)>, &str) {
    let bytes = sql.as_bytes();
    let mut pieces = Vec::new();
    let (mut start, mut at) = (0, 0);
    while at < bytes.len() {
        if bytes[at] == b'$' && bytes.get(at + 1).is_some_and(u8::is_ascii_digit) {
            let digits = bytes[at + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let number = sql[at + 1..at + 1 + digits].parse().unwrap_or(0);
            pieces.push((&sql[start..at], number));
            at += 1 + digits;
            start = at;
        } else {
            at += 1;
        }
    }
    (pieces, &sql[start..])
}

impl QueryFragment<Pg> for Prepared<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // diesel numbers the parameters it writes in the order written: a parameter used twice
        // is sent twice, with the same value.
        if !self.kept {
            out.unsafe_to_cache_prepared();
        }
        let (pieces, rest) = pieces(&self.sql);
        for (text, number) in pieces {
            out.push_sql(text);
            let bind = number
                .checked_sub(1)
                .and_then(|index| self.binds.get(index))
                .ok_or_else(|| {
                    diesel::result::Error::QueryBuilderError(
                        format!("${number} has no bound value ({} bound)", self.binds.len()).into(),
                    )
                })?;
            bind.walk_ast(out.reborrow())?;
        }
        out.push_sql(rest);
        Ok(())
    }
}

impl QueryId for Prepared<'_> {
    type QueryId = ();
    // Cached under the text (with the bind types), not a type.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Prepared<'_> {
    type SqlType = Untyped;
}

impl<Conn> RunQueryDsl<Conn> for Prepared<'_> {}

#[cfg(test)]
mod tests {
    use diesel::sql_types::{Array, BigInt, Text};
    use diesel::{QueryableByName, sql_types};
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    use super::{pieces, prepared};
    use crate::TestDb;

    #[derive(QueryableByName, Debug, PartialEq)]
    struct Row {
        #[diesel(sql_type = Text)]
        line: String,
    }

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = sql_types::BigInt)]
        n: i64,
    }

    async fn statements_prepared(conn: &mut AsyncPgConnection, like: &str) -> i64 {
        diesel::sql_query(
            "select count(*) as n from pg_prepared_statements where statement like $1",
        )
        .bind::<Text, _>(like)
        .get_result::<Count>(conn)
        .await
        .map(|c| c.n)
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_statement_is_prepared_once_per_connection_and_binds_by_number() {
        let db = TestDb::new(&[]).await;
        let mut conn = AsyncPgConnection::establish(db.url())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // $2 before $1, and $1 twice.
        let sql = "select $2 || ':' || n::text || ':' || $1 || $1 as line \
                   from unnest($3::bigint[]) as n order by n";
        for round in 0..3i64 {
            let rows: Vec<Row> = prepared(sql)
                .bind::<Text, _>("a")
                .bind::<Text, _>(format!("r{round}"))
                .bind::<Array<BigInt>, _>(vec![2i64, 1])
                .load(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let lines: Vec<&str> = rows.iter().map(|r| r.line.as_str()).collect();
            assert_eq!(lines, [format!("r{round}:1:aa"), format!("r{round}:2:aa")]);
        }
        assert_eq!(statements_prepared(&mut conn, "%from unnest(%").await, 1);
        // What it replaces: sql_query prepares an unnamed statement each time, never kept.
        for _ in 0..3 {
            diesel::sql_query("select 'plain' as line")
                .load::<Row>(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(statements_prepared(&mut conn, "%'plain'%").await, 0);
        // Nor is a statement planned each time.
        for _ in 0..3 {
            prepared("select 'each time ' || $1 as line")
                .bind::<Text, _>("!")
                .planned_each_time()
                .load::<Row>(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(statements_prepared(&mut conn, "%'each time '%").await, 0);
        // A parameter without a value is an error, not a statement sent short.
        let missing = prepared("select $1 || $2 as line")
            .bind::<Text, _>("only one")
            .load::<Row>(&mut conn)
            .await;
        assert!(missing.is_err(), "{missing:?}");
    }

    #[test]
    fn parameters_are_found_in_any_order_and_repeated() {
        let (found, rest) = pieces("select $2::int, $1 || 'x$' || $12, $$ from t where a = $1");
        let numbers: Vec<usize> = found.iter().map(|(_, n)| *n).collect();
        assert_eq!(numbers, vec![2, 1, 12, 1]);
        assert_eq!(found[0].0, "select ");
        assert_eq!(found[3].0, ", $$ from t where a = ");
        assert_eq!(rest, "");
    }
}
