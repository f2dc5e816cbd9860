"""Durable callback delivery: WXO callbackUrl results and Standard-Webhooks-signed subscribers.

`signing`, `backoff` and `policy` are pure; `sender.Deliverer` claims due deliveries from the
ledger, POSTs them and records every attempt. Import the modules themselves.
"""
