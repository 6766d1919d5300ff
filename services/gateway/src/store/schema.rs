// Mirrors migrations/ (what `diesel print-schema --schema gateway` prints for them).

diesel::table! {
    integrations (brand_id, id) {
        brand_id -> Int8,
        id -> Int8,
        provider -> Text,
        name -> Text,
        shop_domain -> Text,
        base_url -> Text,
        credential_fields -> Array<Text>,
        credentials_sealed -> Bytea,
        webhook_secret_sealed -> Nullable<Bytea>,
        created_at -> Timestamptz,
        sandbox_down -> Bool,
    }
}

diesel::table! {
    sandbox_discounts (brand_id, integration_id, id) {
        brand_id -> Int8,
        integration_id -> Int8,
        id -> Int8,
        code -> Text,
        external_ref -> Text,
        title -> Text,
        terms -> Jsonb,
        active -> Bool,
        created_at -> Timestamptz,
        disabled_at -> Nullable<Timestamptz>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(integrations, sandbox_discounts);
