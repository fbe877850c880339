"""Per-customer scores (`shared/spec/customer-scores.md`): the definitions as pure functions
(`definitions`), the one service that computes and stores them (`service`), its settings
and schedule (`settings`), the pages' reads (`selectors`) and the predictive models (`bgnbd`)."""
