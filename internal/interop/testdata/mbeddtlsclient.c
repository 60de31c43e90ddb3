/*
 * mbeddtlsclient: a Space Captain client over DTLS 1.2, written against
 * Mbed TLS 2.x as the game's C client is (Debian's libmbedtls-dev 2.28,
 * built without DTLS connection IDs). The interop tests compile it with
 *
 *   gcc -Wall -Werror -o mbeddtlsclient mbeddtlsclient.c -lmbedtls -lmbedx509 -lmbedcrypto
 *
 * and run it against the real sc-server --dtls.
 *
 * Usage: mbeddtlsclient HOST PORT CA_FILE SERVER_NAME PIN
 *
 * It speaks DTLS over a datagram socket, verifies the server against
 * CA_FILE (MBEDTLS_SSL_VERIFY_REQUIRED) for SERVER_NAME (Mbed TLS 2.28
 * cannot match IP SANs: the tests say "localhost") and, in a verify
 * callback, checks that the leaf's key has PIN, "sha256//" and the base64
 * of SHA-256 over its DER SubjectPublicKeyInfo ("-" skips the check).
 * Then it sends ECHO, REVERSE and TIME as NUL-terminated strings, one
 * request per datagram, as the original client does, sending a request
 * again when its reply does not come within a second (UDP loses
 * datagrams; the server keeps no reply state), checks each reply and
 * closes with close_notify. It prints "version=", "suite=", "serial=" and
 * "pin=" lines and one "ok TYPE" line per checked reply, and exits 0 only
 * if all passed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/timing.h>
#include <mbedtls/x509_crt.h>

enum { MSG_ECHO = 0, MSG_REVERSE = 1, MSG_TIME = 2 };
#define MSG_ERROR 0xFFFFFFFFu

static void fail_mbed(const char *what, int ret) {
	char buf[256];
	mbedtls_strerror(ret, buf, sizeof buf);
	fprintf(stderr, "mbeddtlsclient: %s: -0x%04x %s\n", what, (unsigned)-ret, buf);
	exit(1);
}

static void put_u32le(unsigned char *p, uint32_t v) {
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = (v >> 24) & 0xff;
}

static uint32_t get_u32le(const unsigned char *p) {
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* pin_of writes "sha256//BASE64" of crt's SubjectPublicKeyInfo into out. */
static int pin_of(mbedtls_x509_crt *crt, char *out, size_t outlen) {
	unsigned char der[2048], hash[32], b64[64];
	size_t olen;
	int len = mbedtls_pk_write_pubkey_der(&crt->pk, der, sizeof der);
	if (len < 0)
		return len;
	/* mbedtls_pk_write_pubkey_der writes at the end of the buffer. */
	if (mbedtls_sha256_ret(der + sizeof der - len, (size_t)len, hash, 0) != 0)
		return -1;
	if (mbedtls_base64_encode(b64, sizeof b64, &olen, hash, sizeof hash) != 0)
		return -1;
	snprintf(out, outlen, "sha256//%.*s", (int)olen, b64);
	return 0;
}

struct pin_check {
	const char *want; /* NULL: no check */
	char got[128];
};

/* verify_pin runs for every certificate of the chain Mbed TLS verifies;
 * for the leaf (depth 0) it checks the pin and fails the handshake on a
 * mismatch, as a pinning client must. */
static int verify_pin(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
	struct pin_check *pc = ctx;
	if (depth != 0)
		return 0;
	if (pin_of(crt, pc->got, sizeof pc->got) != 0) {
		*flags |= MBEDTLS_X509_BADCERT_OTHER;
		return 0;
	}
	if (pc->want != NULL && strcmp(pc->got, pc->want) != 0) {
		fprintf(stderr, "mbeddtlsclient: the server's key has pin %s, not the pinned %s\n", pc->got, pc->want);
		*flags |= MBEDTLS_X509_BADCERT_OTHER;
	}
	return 0;
}

/* request sends one frame of type t with the NUL-terminated text, again
 * after each second without a reply, and returns the reply body (malloc'd,
 * NUL-terminated for printing) and its length. */
static unsigned char *request(mbedtls_ssl_context *ssl, uint32_t t, const char *text, uint32_t *len) {
	size_t n = strlen(text) + 1; /* the NUL travels, as in the original */
	unsigned char frame[512], rec[4200];
	if (8 + n > sizeof frame)
		exit(2);
	put_u32le(frame, t);
	put_u32le(frame + 4, (uint32_t)n);
	memcpy(frame + 8, text, n);
	for (int attempt = 0; attempt < 5; attempt++) {
		int ret;
		do
			ret = mbedtls_ssl_write(ssl, frame, 8 + n);
		while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
		if (ret < 0)
			fail_mbed("writing", ret);
		do
			ret = mbedtls_ssl_read(ssl, rec, sizeof rec);
		while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
		if (ret == MBEDTLS_ERR_SSL_TIMEOUT) {
			fprintf(stderr, "mbeddtlsclient: no reply within a second; sending again\n");
			continue;
		}
		if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
			fprintf(stderr, "mbeddtlsclient: the server closed the session\n");
			exit(1);
		}
		if (ret < 0)
			fail_mbed("reading", ret);
		/* One datagram, one record: whole frames. */
		if (ret < 8 || (size_t)ret != 8 + (size_t)get_u32le(rec + 4)) {
			fprintf(stderr, "mbeddtlsclient: a record of %d bytes is not one whole frame\n", ret);
			exit(1);
		}
		uint32_t rt = get_u32le(rec);
		*len = get_u32le(rec + 4);
		unsigned char *body = calloc(1, *len + 1);
		if (body == NULL)
			exit(1);
		memcpy(body, rec + 8, *len);
		if (rt != t) {
			fprintf(stderr, "mbeddtlsclient: reply type %u to a request of type %u: %s\n", rt, t, body);
			exit(1);
		}
		return body;
	}
	fprintf(stderr, "mbeddtlsclient: no reply after 5 tries\n");
	exit(1);
}

static void expect(const char *name, const unsigned char *got, uint32_t len, const char *want) {
	size_t n = strlen(want) + 1;
	if (len != n || memcmp(got, want, n) != 0) {
		fprintf(stderr, "mbeddtlsclient: %s: got %u bytes \"%s\", want \"%s\" and its NUL\n", name, len, got, want);
		exit(1);
	}
	printf("ok %s %s\n", name, want);
}

/* is_time checks "YYYY-MM-DDTHH:MM:SSZ" and the NUL. */
static int is_time(const unsigned char *b, uint32_t len) {
	const char *pattern = "dddd-dd-ddTdd:dd:ddZ";
	if (len != strlen(pattern) + 1 || b[len - 1] != 0)
		return 0;
	for (size_t i = 0; pattern[i]; i++) {
		if (pattern[i] == 'd' ? (b[i] < '0' || b[i] > '9') : b[i] != (unsigned char)pattern[i])
			return 0;
	}
	return 1;
}

int main(int argc, char **argv) {
	if (argc != 6) {
		fprintf(stderr, "usage: mbeddtlsclient HOST PORT CA_FILE SERVER_NAME PIN|-\n");
		return 2;
	}
	const char *host = argv[1], *port = argv[2], *ca_file = argv[3], *name = argv[4];
	struct pin_check pc = {.want = strcmp(argv[5], "-") == 0 ? NULL : argv[5]};
	int ret;

	mbedtls_net_context net;
	mbedtls_ssl_context ssl;
	mbedtls_ssl_config conf;
	mbedtls_x509_crt ca;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_timing_delay_context timer;
	mbedtls_net_init(&net);
	mbedtls_ssl_init(&ssl);
	mbedtls_ssl_config_init(&conf);
	mbedtls_x509_crt_init(&ca);
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);

	if ((ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, (const unsigned char *)"mbeddtlsclient", 14)) != 0)
		fail_mbed("seeding the DRBG", ret);
	if ((ret = mbedtls_x509_crt_parse_file(&ca, ca_file)) != 0)
		fail_mbed("reading the CA file", ret);
	if ((ret = mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_DATAGRAM, MBEDTLS_SSL_PRESET_DEFAULT)) != 0)
		fail_mbed("configuring", ret);
	mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&conf, &ca, NULL);
	mbedtls_ssl_conf_verify(&conf, verify_pin, &pc);
	mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
	mbedtls_ssl_conf_read_timeout(&conf, 1000);
	if ((ret = mbedtls_ssl_setup(&ssl, &conf)) != 0)
		fail_mbed("setting up", ret);
	if ((ret = mbedtls_ssl_set_hostname(&ssl, name)) != 0)
		fail_mbed("setting the server name", ret);
	if ((ret = mbedtls_net_connect(&net, host, port, MBEDTLS_NET_PROTO_UDP)) != 0)
		fail_mbed("connecting", ret);
	mbedtls_ssl_set_bio(&ssl, &net, mbedtls_net_send, mbedtls_net_recv, mbedtls_net_recv_timeout);
	mbedtls_ssl_set_timer_cb(&ssl, &timer, mbedtls_timing_set_delay, mbedtls_timing_get_delay);

	while ((ret = mbedtls_ssl_handshake(&ssl)) != 0) {
		if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) {
			uint32_t flags = mbedtls_ssl_get_verify_result(&ssl);
			if (flags != 0 && flags != (uint32_t)-1) {
				char vbuf[512];
				mbedtls_x509_crt_verify_info(vbuf, sizeof vbuf, "  ", flags);
				fprintf(stderr, "mbeddtlsclient: certificate verification failed:\n%s", vbuf);
			}
			fail_mbed("handshake", ret);
		}
	}
	if (mbedtls_ssl_get_verify_result(&ssl) != 0) {
		fprintf(stderr, "mbeddtlsclient: the handshake passed without a verified certificate\n");
		return 1;
	}
	printf("version=%s\n", mbedtls_ssl_get_version(&ssl));
	printf("suite=%s\n", mbedtls_ssl_get_ciphersuite(&ssl));
	const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&ssl);
	if (peer != NULL) {
		char serial[128];
		mbedtls_x509_serial_gets(serial, sizeof serial, &peer->serial);
		printf("serial=%s\n", serial);
	}
	printf("pin=%s\n", pc.got);

	uint32_t len;
	unsigned char *body = request(&ssl, MSG_ECHO, "hello, captain", &len);
	expect("ECHO", body, len, "hello, captain");
	free(body);
	body = request(&ssl, MSG_REVERSE, "hello, captain", &len);
	expect("REVERSE", body, len, "niatpac ,olleh");
	free(body);
	body = request(&ssl, MSG_TIME, "", &len);
	if (!is_time(body, len)) {
		fprintf(stderr, "mbeddtlsclient: TIME: got %u bytes \"%s\", want YYYY-MM-DDTHH:MM:SSZ and its NUL\n", len, body);
		return 1;
	}
	printf("ok TIME %s\n", body);
	free(body);

	while ((ret = mbedtls_ssl_close_notify(&ssl)) < 0) {
		if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE)
			fail_mbed("close_notify", ret);
	}
	mbedtls_net_free(&net);
	mbedtls_ssl_free(&ssl);
	mbedtls_ssl_config_free(&conf);
	mbedtls_x509_crt_free(&ca);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
	return 0;
}
