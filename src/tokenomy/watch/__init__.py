"""Watch live engines: scrape their Prometheus endpoints, compare with the cost model, flag drift, refit."""
