/* Printing what the broker or Microsoft wrote, and times, for a human at a terminal. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Prints s with control characters (C0, DEL, C1) replaced by '?' except newline and tab: a
 * message from upstream must not be able to move the cursor or retitle the terminal. */
void display_text(FILE *f, const char *s);

/* The same, printing at most max bytes of s and "..." when it was longer. */
void display_text_max(FILE *f, const char *s, size_t max);

/* "14:32" for 872 seconds; "1:02:03" from an hour on. */
void display_countdown(uint64_t seconds, char out[static 24]);

/* "2026-11-28 09:00:00 UTC", "-" for 0. */
void display_time(uint64_t unix_seconds, char out[static 32]);

/* "in 3 days", "in 2 hours", "5 minutes ago", relative to now. */
void display_relative(uint64_t unix_seconds, uint64_t now, char out[static 32]);
