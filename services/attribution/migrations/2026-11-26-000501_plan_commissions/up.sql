-- Each plan's commission over time: an order earns the commission in effect when it was placed,
-- however late its event arrives. The first row of a plan applies from the beginning of time.
create table plan_commissions (
    brand_id               bigint not null,
    plan_id                bigint not null,
    effective_from         timestamptz not null,
    commission_bps         integer,
    commission_fixed_minor bigint,
    commission_currency    text,
    primary key (brand_id, plan_id, effective_from)
);

insert into plan_commissions (brand_id, plan_id, effective_from, commission_bps,
                              commission_fixed_minor, commission_currency)
select brand_id, plan_id, '-infinity', commission_bps, commission_fixed_minor, commission_currency
from plans;
