//! Small, explicit edits of `postgres://` URLs: switching the database name and pinning a
//! connection's `search_path` (and planner settings) to a service schema.

/// Returns `url` with its database name replaced by `dbname`.
pub fn with_database(url: &str, dbname: &str) -> String {
    let (base, query) = split_query(url);
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{dbname}?{q}"),
        None => format!("{base}/{dbname}"),
    }
}

/// The database name in `url`, if it names one.
pub fn database_name(url: &str) -> Option<&str> {
    let (base, _) = split_query(url);
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let rest = &base[authority_start..];
    rest.find('/')
        .map(|slash| &rest[slash + 1..])
        .filter(|name| !name.is_empty())
}

/// Returns `url` with the server options every service connection runs with (and, unless the URL
/// names one, `application_name=tracking-<schema>`, `tracking-<schema>-generic` with
/// `generic_plans`): `search_path=<schema>`,
/// so that it resolves unqualified names in the service's own schema, and
/// `plan_cache_mode=force_custom_plan`: statements are prepared once per connection
/// ([`crate::prepared`]) but still planned for their values at each execution, because the hot
/// statements take arrays (`unnest($1::bigint[])`) whose sizes a generic plan cannot know (one
/// measured 8 times slower with the generic plan PostgreSQL switched to). With `generic_plans`,
/// `force_generic_plan` instead (planned once, at the first execution) and `enable_seqscan=off`
/// (a lookup planned while its table was empty still probes the index when the table has grown),
/// for a pool whose statements cannot go wrong that way ([`crate::PoolOptions::generic_plans`]).
/// And `random_page_cost=1.1`, because the services' tables are read from memory, not from a
/// spinning disk, which the default (4) models: with the default, a batch of a few hundred keys
/// joined to a table of some 10,000 to 40,000 rows (a new deployment's, before autovacuum
/// analyzes it) was hashed against the whole table, 10 to 25 ms a statement, instead of probing
/// its index in 1 ms. And TCP keepalives from the server after 30 s idle (every 10 s, 3 tries):
/// a session whose client vanished without closing the connection ends within about a minute,
/// with its locks (a stream consumer's lock among them, which a standby then takes), instead of
/// the operating system's two hours.
pub fn with_search_path(url: &str, schema: &str, generic_plans: bool) -> String {
    let plans = if generic_plans {
        "force_generic_plan%20-c%20enable_seqscan%3Doff"
    } else {
        "force_custom_plan"
    };
    let option = format!(
        "options=-c%20search_path%3D{schema}%20-c%20plan_cache_mode%3D{plans}\
         %20-c%20random_page_cost%3D1.1%20-c%20tcp_keepalives_idle%3D30\
         %20-c%20tcp_keepalives_interval%3D10%20-c%20tcp_keepalives_count%3D3"
    );
    let (base, query) = split_query(url);
    let query = query.filter(|q| !q.is_empty());
    // Named for the service unless the URL names it, so that `pg_stat_activity` tells an
    // operator which service each connection belongs to.
    let named = query.is_some_and(|q| {
        q.split('&').any(|pair| {
            let key = pair.split_once('=').map_or(pair, |(key, _)| key);
            key.replace("%5F", "_").replace("%5f", "_") == "application_name"
        })
    });
    // A pool that plans once is a service's second pool (`PoolOptions::planned_once`): named apart.
    let name = match (named, generic_plans) {
        (true, _) => String::new(),
        (false, false) => format!("&application_name=tracking-{schema}"),
        (false, true) => format!("&application_name=tracking-{schema}-generic"),
    };
    match query {
        Some(q) => format!("{base}?{q}&{option}{name}"),
        None => format!("{base}?{option}{name}"),
    }
}

/// `url` with any password replaced by `***`, for logs.
pub fn redacted(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..authority_start],
                &rest[..colon],
                &rest[at..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn split_query(url: &str) -> (&str, Option<&str>) {
    match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_database_keeping_query() {
        assert_eq!(
            with_database("postgres://u@h:5432/a?sslmode=disable", "b"),
            "postgres://u@h:5432/b?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "b"), "postgres://u@h/b");
        assert_eq!(database_name("postgres://u@h/x?y=1"), Some("x"));
        assert_eq!(database_name("postgres://u@h"), None);
    }

    #[test]
    fn adds_search_path_option() {
        const KEEP: &str = "%20-c%20tcp_keepalives_idle%3D30%20-c%20tcp_keepalives_interval%3D10%20-c%20tcp_keepalives_count%3D3";
        assert_eq!(
            with_search_path("postgres://u@h/db", "plan", false),
            format!(
                "postgres://u@h/db?options=-c%20search_path%3Dplan%20-c%20plan_cache_mode%3Dforce_custom_plan%20-c%20random_page_cost%3D1.1{KEEP}&application_name=tracking-plan"
            )
        );
        assert_eq!(
            with_search_path("postgres://u@h/db?sslmode=disable", "plan", false),
            format!(
                "postgres://u@h/db?sslmode=disable&options=-c%20search_path%3Dplan%20-c%20plan_cache_mode%3Dforce_custom_plan%20-c%20random_page_cost%3D1.1{KEEP}&application_name=tracking-plan"
            )
        );
        assert_eq!(
            with_search_path("postgres://u@h/db", "mint", true),
            format!(
                "postgres://u@h/db?options=-c%20search_path%3Dmint%20-c%20plan_cache_mode%3Dforce_generic_plan%20-c%20enable_seqscan%3Doff%20-c%20random_page_cost%3D1.1{KEEP}&application_name=tracking-mint-generic"
            )
        );
        assert_eq!(
            with_search_path("postgres://u@h/db?application_name=edge", "mint", false),
            format!(
                "postgres://u@h/db?application_name=edge&options=-c%20search_path%3Dmint%20-c%20plan_cache_mode%3Dforce_custom_plan%20-c%20random_page_cost%3D1.1{KEEP}"
            )
        );
        // The URL's own name wins however its key is spelled; a longer key is not a name.
        for (url, named) in [
            ("postgres://u@h/db?application%5Fname=edge", true),
            ("postgres://u@h/db?application_name_x=1", false),
            ("postgres://u@h/db?", false),
        ] {
            let with = with_search_path(url, "plan", false);
            assert_eq!(
                with.ends_with("&application_name=tracking-plan"),
                !named,
                "{url} -> {with}"
            );
        }
    }

    #[test]
    fn redacts_password() {
        assert_eq!(
            redacted("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redacted("postgres://u@h/db"), "postgres://u@h/db");
    }
}
