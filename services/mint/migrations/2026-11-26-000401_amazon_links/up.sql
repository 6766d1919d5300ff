-- Amazon Ads links wait pending (no code) until the gateway has made the creator's attribution
-- tag: the pusher takes them by this index, as it takes pending codes by codes_to_push.
create index codes_to_link on codes (next_push_at) where status = 'pending' and code is null;
