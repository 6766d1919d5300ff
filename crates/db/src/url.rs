//! Small, explicit edits of `postgres://` URLs: switching the database name and pinning a
//! connection's `search_path` (and planner settings) to a service schema.

/// Returns `url` with its database name replaced by `dbname` (a `dbname` query parameter, which
/// the client would take over the path, is dropped).
pub fn with_database(url: &str, dbname: &str) -> String {
    let (base, query) = split_query(url);
    let host_start = host_start(base);
    let base = match base[host_start..].find('/') {
        Some(slash) => &base[..host_start + slash],
        None => base,
    };
    let query: Vec<&str> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some("dbname"))
        .collect();
    if query.is_empty() {
        format!("{base}/{dbname}")
    } else {
        format!("{base}/{dbname}?{}", query.join("&"))
    }
}

/// The database name in `url`'s path, if it names one (as written: percent-encoded).
pub fn database_name(url: &str) -> Option<&str> {
    let (base, _) = split_query(url);
    let rest = &base[host_start(base)..];
    rest.find('/')
        .map(|slash| &rest[slash + 1..])
        .filter(|name| !name.is_empty())
}

/// The database a connection to `url` reaches, as the client reads the URL: a `dbname` query
/// parameter, else the path's name, else (as PostgreSQL has it) the one named like its user (a
/// `user` query parameter, else the URL's user); each percent-decoded. `None` for a URL naming
/// no user either (the client then connects as the operating system's user).
pub fn target_database(url: &str) -> Option<String> {
    let named = |value: Option<String>| value.filter(|v| !v.is_empty());
    named(query_value(url, "dbname"))
        .or_else(|| named(database_name(url).map(percent_decoded)))
        .or_else(|| named(query_value(url, "user")))
        .or_else(|| named(credentials(url)?.split(':').next().map(percent_decoded)))
}

/// The last value of query parameter `key` in `url` (the client takes the last), decoded.
fn query_value(url: &str, key: &str) -> Option<String> {
    let (_, query) = split_query(url);
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .rfind(|(k, _)| *k == key)
        .map(|(_, v)| percent_decoded(v))
}

/// `text` with its `%XX` escapes decoded (an escape that is not one is kept as written).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
/// the operating system's two hours. The client keeps alive the same way
/// (`keepalives_idle=30&keepalives_interval=10&keepalives_retries=3`, unless the URL sets its
/// own): a connection to a server that vanished (a failover, a partition) errors within about a
/// minute, and the `LISTEN` connection of the live streams reconnects, instead of waiting on.
///
/// An `options` the URL already has (an operator's `statement_timeout`) is kept, before the
/// kit's settings, which win where both set one: PostgreSQL's client would keep only the last
/// `options` of the URL.
pub fn with_search_path(url: &str, schema: &str, generic_plans: bool) -> String {
    let plans = if generic_plans {
        "force_generic_plan%20-c%20enable_seqscan%3Doff"
    } else {
        "force_custom_plan"
    };
    let option = format!(
        "-c%20search_path%3D{schema}%20-c%20plan_cache_mode%3D{plans}\
         %20-c%20random_page_cost%3D1.1%20-c%20tcp_keepalives_idle%3D30\
         %20-c%20tcp_keepalives_interval%3D10%20-c%20tcp_keepalives_count%3D3"
    );
    let (base, query) = split_query(url);
    let key = |pair: &str| {
        let key = pair.split_once('=').map_or(pair, |(key, _)| key);
        key.replace("%5F", "_").replace("%5f", "_")
    };
    let mut pairs: Vec<String> = Vec::new();
    let mut own_options: Vec<&str> = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        match pair.split_once('=') {
            _ if pair.is_empty() => {}
            Some((_, value)) if key(pair) == "options" => own_options.push(value),
            _ => pairs.push(pair.to_owned()),
        }
    }
    // Named for the service unless the URL names it, so that `pg_stat_activity` tells an
    // operator which service each connection belongs to.
    let named = pairs.iter().any(|pair| key(pair) == "application_name");
    let keeps_alive = pairs.iter().any(|pair| key(pair).starts_with("keepalives"));
    own_options.retain(|value| !value.is_empty());
    own_options.push(&option);
    pairs.push(format!("options={}", own_options.join("%20")));
    // A pool that plans once is a service's second pool (`PoolOptions::planned_once`): named apart.
    match (named, generic_plans) {
        (true, _) => {}
        (false, false) => pairs.push(format!("application_name=tracking-{schema}")),
        (false, true) => pairs.push(format!("application_name=tracking-{schema}-generic")),
    }
    if !keeps_alive {
        pairs.push("keepalives_idle=30&keepalives_interval=10&keepalives_retries=3".to_owned());
    }
    format!("{base}?{}", pairs.join("&"))
}

/// `url` with any password (in its authority, or a `password=` in its query) replaced by `***`,
/// for logs.
pub fn redacted(url: &str) -> String {
    // Every `password=` parameter first, wherever it is: a value holding an `@` would move the
    // credentials' end past it.
    redacted_authority(&masked_password_params(url))
}

/// `url` with the value of each `password=` parameter (any case) replaced by `***`.
fn masked_password_params(url: &str) -> String {
    const KEY: &str = "password=";
    let lower = url.to_ascii_lowercase();
    let mut out = String::with_capacity(url.len());
    let mut at = 0;
    while let Some(found) = lower[at..].find(KEY).map(|i| at + i) {
        let value = found + KEY.len();
        out.push_str(&url[at..value]);
        at = value;
        if found > 0 && matches!(url.as_bytes()[found - 1], b'?' | b'&') {
            out.push_str("***");
            at = url[value..].find('&').map_or(url.len(), |end| value + end);
        }
    }
    out.push_str(&url[at..]);
    out
}

fn redacted_authority(url: &str) -> String {
    let scheme_end = scheme_end(url);
    match credentials(url).and_then(|creds| creds.find(':')) {
        Some(colon) => format!(
            "{}:***{}",
            &url[..scheme_end + colon],
            &url[host_start(url) - 1..]
        ),
        None => url.to_owned(),
    }
}

/// Where `url`'s credentials (or host) begin: after its scheme.
fn scheme_end(url: &str) -> usize {
    url.find("://").map_or(0, |i| i + 3)
}

/// `url`'s credentials (`user[:password]`), which the client reads up to the first `@` of what
/// follows the scheme: a password may hold a `/`, a `?` or a `:`.
fn credentials(url: &str) -> Option<&str> {
    let rest = &url[scheme_end(url)..];
    rest.find('@').map(|at| &rest[..at])
}

/// Where `url`'s host begins: after its scheme and its credentials.
fn host_start(url: &str) -> usize {
    scheme_end(url) + credentials(url).map_or(0, |creds| creds.len() + 1)
}

/// `url` before its query, and its query: from the first `?` after the credentials.
fn split_query(url: &str) -> (&str, Option<&str>) {
    let start = host_start(url);
    match url[start..].find('?') {
        Some(q) => (&url[..start + q], Some(&url[start + q + 1..])),
        None => (url, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_naming_no_database_reaches_its_users() {
        assert_eq!(
            target_database("postgres://app:pw@db:5432/orders?sslmode=disable"),
            Some("orders".into())
        );
        assert_eq!(
            target_database("postgres://app:pw@db:5432"),
            Some("app".into())
        );
        assert_eq!(
            target_database("postgres://app@db/?sslmode=disable"),
            Some("app".into())
        );
        assert_eq!(target_database("postgres://db:5432"), None);
        // As the client reads them: parameters, percent-encoding.
        assert_eq!(
            target_database("postgres://db:5432?user=svc&sslmode=disable"),
            Some("svc".into())
        );
        assert_eq!(
            target_database("postgres://app@db/orders?dbname=sales%20eu"),
            Some("sales eu".into())
        );
        assert_eq!(
            target_database("postgres://db/my%2Ddb%zz"),
            Some("my-db%zz".into())
        );
        assert_eq!(
            target_database("postgres://caf%C3%A9@db"),
            Some("café".into())
        );
    }

    #[test]
    fn swaps_database_keeping_query() {
        assert_eq!(
            with_database("postgres://u@h:5432/a?sslmode=disable", "b"),
            "postgres://u@h:5432/b?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "b"), "postgres://u@h/b");
        assert_eq!(
            with_database("postgres://u@h/a?dbname=a&sslmode=disable&dbname=c", "b"),
            "postgres://u@h/b?sslmode=disable"
        );
        assert_eq!(database_name("postgres://u@h/x?y=1"), Some("x"));
        assert_eq!(database_name("postgres://u@h"), None);
    }

    #[test]
    fn adds_search_path_option() {
        const KEEP: &str = "%20-c%20tcp_keepalives_idle%3D30%20-c%20tcp_keepalives_interval%3D10%20-c%20tcp_keepalives_count%3D3";
        const CLIENT: &str = "&keepalives_idle=30&keepalives_interval=10&keepalives_retries=3";
        assert_eq!(
            with_search_path("postgres://u@h/db", "plan", false),
            format!(
                "postgres://u@h/db?options=-c%20search_path%3Dplan%20-c%20plan_cache_mode%3Dforce_custom_plan%20-c%20random_page_cost%3D1.1{KEEP}&application_name=tracking-plan{CLIENT}"
            )
        );
        assert_eq!(
            with_search_path("postgres://u@h/db?sslmode=disable", "plan", false),
            format!(
                "postgres://u@h/db?sslmode=disable&options=-c%20search_path%3Dplan%20-c%20plan_cache_mode%3Dforce_custom_plan%20-c%20random_page_cost%3D1.1{KEEP}&application_name=tracking-plan{CLIENT}"
            )
        );
        assert_eq!(
            with_search_path("postgres://u@h/db", "mint", true),
            format!(
                "postgres://u@h/db?options=-c%20search_path%3Dmint%20-c%20plan_cache_mode%3Dforce_generic_plan%20-c%20enable_seqscan%3Doff%20-c%20random_page_cost%3D1.1{KEEP}&application_name=tracking-mint-generic{CLIENT}"
            )
        );
        assert_eq!(
            with_search_path("postgres://u@h/db?application_name=edge", "mint", false),
            format!(
                "postgres://u@h/db?application_name=edge&options=-c%20search_path%3Dmint%20-c%20plan_cache_mode%3Dforce_custom_plan%20-c%20random_page_cost%3D1.1{KEEP}{CLIENT}"
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
                with.contains("&application_name=tracking-plan"),
                !named,
                "{url} -> {with}"
            );
        }
    }

    #[test]
    fn keeps_the_urls_own_options_and_keepalives() {
        let with = with_search_path(
            "postgres://u@h/db?options=-c%20statement_timeout%3D5000&keepalives_idle=5",
            "plan",
            false,
        );
        assert_eq!(with.matches("options=").count(), 1, "{with}");
        assert!(
            with.contains("?keepalives_idle=5&options=-c%20statement_timeout%3D5000%20-c%20search_path%3Dplan%20"),
            "the operator's options first, the kit's last (they win): {with}"
        );
        assert!(!with.contains("keepalives_retries"), "{with}");
        // The URL parses as a client's configuration, with both options.
        let config: tokio_postgres::Config = with.parse().unwrap_or_else(|e| panic!("{e}"));
        let options = config.get_options().unwrap_or_default();
        assert!(
            options.starts_with("-c statement_timeout=5000 -c search_path=plan"),
            "{options}"
        );
        let default = with_search_path("postgres://u@h/db", "plan", false);
        let config: tokio_postgres::Config = default.parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.get_keepalives_idle(),
            std::time::Duration::from_secs(30)
        );
    }

    #[test]
    fn redacts_password() {
        assert_eq!(
            redacted("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redacted("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redacted("postgres://u@h/db?sslmode=require&password=s3cret&application_name=x"),
            "postgres://u@h/db?sslmode=require&password=***&application_name=x"
        );
        assert_eq!(
            redacted("postgres://u:a@h/db?password=b"),
            "postgres://u:***@h/db?password=***"
        );
        // The client reads the credentials up to the first `@`: a password may hold a `/` or
        // a `?` (a base64 secret), which are never logged.
        assert_eq!(
            redacted("postgres://h/db?password=p@ss"),
            "postgres://h/db?password=***"
        );
        assert_eq!(
            redacted("postgres://h:5432/db?PASSWORD=p@ss&x=1"),
            "postgres://h:5432/db?PASSWORD=***&x=1"
        );
        assert_eq!(
            redacted("postgres://app:ab/c?d=@db:5432/orders?sslmode=disable"),
            "postgres://app:***@db:5432/orders?sslmode=disable"
        );
        let url = "postgres://app:ab/c?d=@db:5432/orders?sslmode=disable";
        assert_eq!(database_name(url), Some("orders"));
        assert_eq!(
            target_database("postgres://app:ab/cd@db"),
            Some("app".into())
        );
        assert_eq!(
            with_database(url, "postgres"),
            "postgres://app:ab/c?d=@db:5432/postgres?sslmode=disable"
        );
        assert!(
            with_search_path(url, "plan", false)
                .starts_with("postgres://app:ab/c?d=@db:5432/orders?sslmode=disable&options=")
        );
    }
}
