/*
 * connector_native.h — the C ABI of native (trusted) source plugins.
 *
 * ABI version 1. A native plugin is a shared library loaded into the
 * connector host's process; it runs without a sandbox, so the host loads it
 * only when the operator's connector file sets [grants] trusted-native = true.
 *
 * Only C types cross the boundary: integers, byte buffers and NUL-terminated
 * UTF-8 strings holding JSON. Strings the plugin returns are owned by the
 * plugin and handed back to its free_string; strings the host passes are
 * borrowed for the duration of the call. No function may unwind (catch
 * panics/exceptions at every entry point and report them as an error).
 *
 * Handshake: the host first calls connector_native_abi_version() and refuses
 * a library whose version it does not support; only then does it call
 * connector_native_plugin_v1() and check the table's abi_version and
 * struct_size.
 *
 * JSON shapes (see docs/plugin-guide.md, "Native plugins"):
 *   info            {"name": str, "version": str, "api_version": "0.1.0"}
 *   result          {"ok": VALUE} or {"error": ERROR}
 *   ERROR           {"kind": "invalid-config" | "auth" | "rate-limited" |
 *                    "transient" | "permanent", "message": str,
 *                    "retry_after_secs": int?}
 *   next_page VALUE a page: {"conversations": [...], "messages": [...],
 *                    "checkpoint_base64": str, "complete": bool}
 */
#ifndef CONNECTOR_NATIVE_H
#define CONNECTOR_NATIVE_H

#include <stddef.h>
#include <stdint.h>

#define CONNECTOR_NATIVE_ABI_VERSION 1u

typedef struct ConnectorNativeV1 {
    /* CONNECTOR_NATIVE_ABI_VERSION */
    uint32_t abi_version;
    /* sizeof(ConnectorNativeV1) as the plugin was compiled */
    uint32_t struct_size;
    /* info JSON (never NULL) */
    char *(*info)(void);
    /* result JSON with "ok": null when the configuration is acceptable */
    char *(*validate_config)(const char *config_json);
    /* A session handle, or NULL with *error_json set to an ERROR object.
     * checkpoint is NULL on the first run. */
    void *(*open)(const char *config_json, const uint8_t *checkpoint,
                  size_t checkpoint_len, char **error_json);
    /* result JSON whose "ok" is a page */
    char *(*next_page)(void *session);
    /* Copies up to buf_len bytes of a "deferred" attachment, starting at
     * offset, into buf and sets *written (0 at the end). Returns 0, or
     * non-zero with *error_json set to an ERROR object. */
    int32_t (*read_attachment)(void *session, const char *message_id,
                               const char *attachment_id, uint64_t offset,
                               uint8_t *buf, size_t buf_len, size_t *written,
                               char **error_json);
    /* Ends a session; the handle is not used again. */
    void (*close)(void *session);
    /* Frees a string this plugin returned. */
    void (*free_string)(char *s);
} ConnectorNativeV1;

/* Step 1 of the handshake. */
uint32_t connector_native_abi_version(void);
/* Step 2, only for ABI version 1. */
const ConnectorNativeV1 *connector_native_plugin_v1(void);

#endif
