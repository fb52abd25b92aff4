/* Repeated denials folded into one audit record per interval, so that no local user can
 * flood the audit log (design.md §8): the first denial of a kind is written at once, the
 * repeats are counted and written as one record with count, first and last time at most once
 * per interval, and at shutdown. A kind is (uid, event, decision, reason, rule, and the profile
 * when it exists: a name the peer made up is not part of it, or made-up names would each get a
 * line). Root and the broker's uid are not aggregated. */
#pragma once

#include <stdint.h>

#include "audit.h"

struct audit_aggregator;

int audit_aggregator_new(struct audit *audit, uint32_t interval_sec, struct audit_aggregator **ret);
/* Writes every pending count first. */
void audit_aggregator_free(struct audit_aggregator *g);

/* Audits a denial (r->peer set): written now when it is the first of its kind in the interval,
 * counted otherwise. A negative return means the record could not be written: the caller must
 * not answer as if it had been. */
int audit_write_denial(struct audit_aggregator *g, const struct audit_record *r);
/* Writes the counts whose interval is over; called about once a second. */
void audit_aggregator_tick(struct audit_aggregator *g);
