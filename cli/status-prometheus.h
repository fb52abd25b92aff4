/* credbroker status --prometheus: the broker's status and metrics replies in the Prometheus text
 * exposition format (version 0.0.4), for node_exporter's textfile collector (docs/monitoring.md).
 */
#pragma once

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>

#include "status-check.h"

struct status_prometheus {
        /* The status reply's "accounts" and the metrics reply, each NULL when not read: then
         * credbroker_up is 0 and their families have no samples. */
        const cJSON *accounts;
        const cJSON *metrics;
        enum status_level overall; /* what credbroker status would exit with */
        uint64_t now;              /* unix seconds */
        uint32_t warn_days;
};

/* Writes every family, each with its HELP and TYPE lines. 0, or -EIO when f failed. */
int status_prometheus_write(FILE *f, const struct status_prometheus *s);

/* A label value as the format wants it: backslash, double quote and line feed escaped; any byte
 * outside printable ASCII written as '?', so the file is valid UTF-8 whatever the broker said. */
void status_prometheus_label_value(FILE *f, const char *value);
