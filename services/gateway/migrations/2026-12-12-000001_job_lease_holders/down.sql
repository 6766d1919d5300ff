alter table integration_jobs drop column holder;
