/* MIME types by file name extension, for credbroker send --attach. */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "cleanup.h"
#include "mime-internal.h"

static const struct {
        const char *ext, *type;
} types[] = {
    {"txt", "text/plain"},
    {"log", "text/plain"},
    {"conf", "text/plain"},
    {"csv", "text/csv"},
    {"htm", "text/html"},
    {"html", "text/html"},
    {"ics", "text/calendar"},
    {"md", "text/markdown"},
    {"json", "application/json"},
    {"xml", "application/xml"},
    {"pdf", "application/pdf"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tgz", "application/gzip"},
    {"tar", "application/x-tar"},
    {"xz", "application/x-xz"},
    {"zst", "application/zstd"},
    {"7z", "application/x-7z-compressed"},
    {"doc", "application/msword"},
    {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    {"xls", "application/vnd.ms-excel"},
    {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    {"ppt", "application/vnd.ms-powerpoint"},
    {"pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
    {"odt", "application/vnd.oasis.opendocument.text"},
    {"ods", "application/vnd.oasis.opendocument.spreadsheet"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"svg", "image/svg+xml"},
    {"webp", "image/webp"},
    {"mp3", "audio/mpeg"},
    {"mp4", "video/mp4"},
};

const char *mime_type_for(const char *filename)
{
        const char *dot = strrchr(filename, '.');

        for (size_t i = 0; dot && i < ELEMENTSOF(types); i++)
                if (strcasecmp(dot + 1, types[i].ext) == 0)
                        return types[i].type;
        return "application/octet-stream";
}

static size_t token_len(const char *s)
{
        size_t n = 0;

        while (s[n] && (strchr("!#$&^_.+-", s[n]) || (s[n] >= 'a' && s[n] <= 'z') ||
                        (s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= '0' && s[n] <= '9')))
                n++;
        return n;
}

bool mime_type_is_valid(const char *type)
{
        size_t a = token_len(type), b;

        if (a == 0 || a > 64 || type[a] != '/')
                return false;
        b = token_len(type + a + 1);
        if (b == 0 || b > 64 || type[a + 1 + b])
                return false;
        /* Their bodies may not be base64 (RFC 2046 5.1, 5.2). */
        return strncasecmp(type, "multipart/", 10) != 0 && strncasecmp(type, "message/", 8) != 0;
}
