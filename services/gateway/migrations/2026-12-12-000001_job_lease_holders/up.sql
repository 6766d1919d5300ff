-- Who holds a job's lease on an integration: a replica's rounds renew and give back only a lease
-- they hold, so a lease taken over after it expired is not given back by its former holder, and
-- a replica that stops gives back every lease it holds. Leases taken before this column have
-- none, and expire as before.
alter table integration_jobs add column holder text;
