"""Per-customer scores (`shared/spec/customer-scores.md`): the definitions as pure functions
(`definitions`), and the one service that computes and stores them (`service`)."""
