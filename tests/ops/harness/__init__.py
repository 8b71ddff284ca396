"""Shared helpers of the ops tests. Each drives the real program and fails with a message naming
a missing tool or binary (never a skip).

procs    free_port(host), port_open(), wait_for_port(port, host, process=, wrapper=),
         wait_until(pred, timeout=, what=), run(argv) (fails the test with the output),
         require_tool(name), ManagedProcess(argv, name=, log_path=, env=, wrapper=) with
         start/stop/send_signal/log_text, stop_all().
service  start_detector(log_dir, api_key=, key_file=, env=, host=, port=, metrics_port=, wrapper=)
         -> DetectorService (.address, .base_url, .metrics_url, .auth_headers(), .start(),
         .stop(), .reload_keys(), .healthz_status()); API_BINARY, MODEL_PATH, SAMPLE_TEXT.
pki      make_ca(dir) -> CertificateAuthority(cert, key);
         issue_server_cert(ca, dir, names, key_type="ec"|"rsa") -> ServerCertificate
         (cert, chain, fullchain, privkey), named like certbot's live/ files.
nginx    start_edge(workdir, upstream=, cert=, hostname=, listen_host=, http_port=, https_port=,
         log_dir=, webroot=, overrides={VAR: value}, wrapper=) -> Nginx (.https_client(ca),
         .http_client(), .https_url(), .http_url(), .access_lines(), .access_entry(ua),
         .send_raw(bytes, tls_ca=), .reload(), .reopen(), .signal_argv("reopen"), .stop());
         render_templates(), production_variables(), parse_access_line().

`wrapper` (e.g. ["ip", "netns", "exec", "ns1"]) runs a program inside a network namespace.
Other areas add their own modules here (acme, fail2ban, netns, monitoring, ...).
"""
