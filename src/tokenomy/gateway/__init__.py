"""The gateway: route each request to the cheapest good-enough tier, with budgets and a ledger."""
