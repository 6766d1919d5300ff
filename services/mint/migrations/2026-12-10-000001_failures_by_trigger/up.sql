-- Whether a failure came from a mint the plan's trigger asked for (the mint queue) rather than
-- the brand (MintCode, RetryCode): a profile fix retries the brand's at any time, the trigger's
-- only while the trigger still wants the creator's code.
alter table mint_failures add column by_trigger boolean not null default false;
