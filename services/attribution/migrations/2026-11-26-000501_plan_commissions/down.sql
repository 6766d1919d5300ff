drop table plan_commissions;
