"""Portal plumbing every app uses (the base layer: `customers` imports no other app, every
app may import this): which merchant a request works on (`tenancy`, `middleware`), who may do
what (`permissions`), sign-in throttling (`security`), what every page's template knows
(`context_processors`), and the list pages' base view and table pieces (`lists`, `tables`).

The merchant's own data (customers, purchases, imports, metrics) is the rest of `customers`.
"""
