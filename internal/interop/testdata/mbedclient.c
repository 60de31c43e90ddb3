/*
 * mbedclient: a Space Captain client written against Mbed TLS 2.x, the
 * stack of the original C client (Debian's libmbedtls-dev 2.28 speaks TLS
 * 1.2 only). The interop tests compile it with
 *
 *   gcc -Wall -Werror -o mbedclient mbedclient.c -lmbedtls -lmbedx509 -lmbedcrypto
 *
 * and run it against the real sc-server.
 *
 * Usage: mbedclient HOST PORT CA_FILE SERVER_NAME
 *
 * It verifies the server against CA_FILE (MBEDTLS_SSL_VERIFY_REQUIRED) for
 * SERVER_NAME — Mbed TLS 2.28 cannot match IP addresses against IP SANs, so
 * the tests name the server "localhost", which the default certificate
 * carries — then sends ECHO, REVERSE and TIME as NUL-terminated strings,
 * as the original client does, checks each reply and closes with
 * close_notify. It prints "version=", "suite=" and "serial=" lines and one
 * "ok TYPE" line per checked reply, and exits 0 only if all passed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

enum { MSG_ECHO = 0, MSG_REVERSE = 1, MSG_TIME = 2, MSG_ERROR = 0xFFFFFFFF };

static void fail_mbed(const char *what, int ret) {
	char buf[256];
	mbedtls_strerror(ret, buf, sizeof buf);
	fprintf(stderr, "mbedclient: %s: -0x%04x %s\n", what, (unsigned)-ret, buf);
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

static void write_all(mbedtls_ssl_context *ssl, const unsigned char *buf, size_t len) {
	while (len > 0) {
		int ret = mbedtls_ssl_write(ssl, buf, len);
		if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
			continue;
		if (ret < 0)
			fail_mbed("writing", ret);
		buf += ret;
		len -= (size_t)ret;
	}
}

static void read_all(mbedtls_ssl_context *ssl, unsigned char *buf, size_t len) {
	while (len > 0) {
		int ret = mbedtls_ssl_read(ssl, buf, len);
		if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
			continue;
		if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
			fprintf(stderr, "mbedclient: the server closed the connection\n");
			exit(1);
		}
		if (ret < 0)
			fail_mbed("reading", ret);
		buf += ret;
		len -= (size_t)ret;
	}
}

/* request sends one frame of type t with the NUL-terminated text and
 * returns the reply body (malloc'd, NUL-terminated for printing) and its
 * length. */
static unsigned char *request(mbedtls_ssl_context *ssl, uint32_t t, const char *text, uint32_t *len) {
	size_t n = strlen(text) + 1; /* the NUL travels, as in the original */
	unsigned char *frame = malloc(8 + n);
	if (frame == NULL)
		exit(1);
	put_u32le(frame, t);
	put_u32le(frame + 4, (uint32_t)n);
	memcpy(frame + 8, text, n);
	write_all(ssl, frame, 8 + n);
	free(frame);

	unsigned char hdr[8];
	read_all(ssl, hdr, sizeof hdr);
	uint32_t rt = get_u32le(hdr);
	*len = get_u32le(hdr + 4);
	if (*len > 4096) {
		fprintf(stderr, "mbedclient: reply of %u bytes, over the 4096 maximum\n", *len);
		exit(1);
	}
	unsigned char *body = calloc(1, *len + 1);
	if (body == NULL)
		exit(1);
	read_all(ssl, body, *len);
	if (rt != t) {
		fprintf(stderr, "mbedclient: reply type %u to a request of type %u: %s\n", rt, t, body);
		exit(1);
	}
	return body;
}

static void expect(const char *name, const unsigned char *got, uint32_t len, const char *want) {
	size_t n = strlen(want) + 1;
	if (len != n || memcmp(got, want, n) != 0) {
		fprintf(stderr, "mbedclient: %s: got %u bytes \"%s\", want \"%s\" and its NUL\n", name, len, got, want);
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
	if (argc != 5 && argc != 7) {
		fprintf(stderr, "usage: mbedclient HOST PORT CA_FILE SERVER_NAME [CLIENT_CERT CLIENT_KEY]\n");
		return 2;
	}
	const char *host = argv[1], *port = argv[2], *ca_file = argv[3], *name = argv[4];
	const char *client_cert = argc == 7 ? argv[5] : NULL, *client_key = argc == 7 ? argv[6] : NULL;
	int ret;

	mbedtls_net_context net;
	mbedtls_ssl_context ssl;
	mbedtls_ssl_config conf;
	mbedtls_x509_crt ca, own;
	mbedtls_pk_context own_key;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_net_init(&net);
	mbedtls_ssl_init(&ssl);
	mbedtls_ssl_config_init(&conf);
	mbedtls_x509_crt_init(&ca);
	mbedtls_x509_crt_init(&own);
	mbedtls_pk_init(&own_key);
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);

	if ((ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, (const unsigned char *)"mbedclient", 10)) != 0)
		fail_mbed("seeding the DRBG", ret);
	if ((ret = mbedtls_x509_crt_parse_file(&ca, ca_file)) != 0)
		fail_mbed("reading the CA file", ret);
	if ((ret = mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT)) != 0)
		fail_mbed("configuring", ret);
	mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&conf, &ca, NULL);
	mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
	if (client_cert != NULL) {
		/* A player's identity: sc-server --client-auth. */
		if ((ret = mbedtls_x509_crt_parse_file(&own, client_cert)) != 0)
			fail_mbed("reading the client certificate", ret);
		if ((ret = mbedtls_pk_parse_keyfile(&own_key, client_key, NULL)) != 0)
			fail_mbed("reading the client key", ret);
		if ((ret = mbedtls_ssl_conf_own_cert(&conf, &own, &own_key)) != 0)
			fail_mbed("setting the client certificate", ret);
	}
	if ((ret = mbedtls_ssl_setup(&ssl, &conf)) != 0)
		fail_mbed("setting up", ret);
	if ((ret = mbedtls_ssl_set_hostname(&ssl, name)) != 0)
		fail_mbed("setting the server name", ret);
	if ((ret = mbedtls_net_connect(&net, host, port, MBEDTLS_NET_PROTO_TCP)) != 0)
		fail_mbed("connecting", ret);
	mbedtls_ssl_set_bio(&ssl, &net, mbedtls_net_send, mbedtls_net_recv, NULL);

	while ((ret = mbedtls_ssl_handshake(&ssl)) != 0) {
		if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) {
			uint32_t flags = mbedtls_ssl_get_verify_result(&ssl);
			if (flags != 0) {
				char vbuf[512];
				mbedtls_x509_crt_verify_info(vbuf, sizeof vbuf, "  ", flags);
				fprintf(stderr, "mbedclient: certificate verification failed:\n%s", vbuf);
			}
			fail_mbed("handshake", ret);
		}
	}
	/* VERIFY_REQUIRED fails the handshake on a bad certificate; check
	 * anyway, so that a configuration mistake cannot pass silently. */
	if (mbedtls_ssl_get_verify_result(&ssl) != 0) {
		fprintf(stderr, "mbedclient: the handshake passed without a verified certificate\n");
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

	uint32_t len;
	unsigned char *body = request(&ssl, MSG_ECHO, "hello, captain", &len);
	expect("ECHO", body, len, "hello, captain");
	free(body);
	body = request(&ssl, MSG_REVERSE, "hello, captain", &len);
	expect("REVERSE", body, len, "niatpac ,olleh");
	free(body);
	body = request(&ssl, MSG_TIME, "", &len);
	if (!is_time(body, len)) {
		fprintf(stderr, "mbedclient: TIME: got %u bytes \"%s\", want YYYY-MM-DDTHH:MM:SSZ and its NUL\n", len, body);
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
