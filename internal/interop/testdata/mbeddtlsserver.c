/*
 * mbeddtlsserver: a Space Captain server over DTLS 1.2 written against
 * Mbed TLS 2.x, with the cookie exchange (HelloVerifyRequest) on, as Mbed
 * TLS's own programs/ssl/dtls_server.c sets it up. The interop tests
 * compile it with
 *
 *   gcc -Wall -Werror -o mbeddtlsserver mbeddtlsserver.c -lmbedtls -lmbedx509 -lmbedcrypto
 *
 * and point sc-client --udp at it.
 *
 * Usage: mbeddtlsserver CERT_FILE KEY_FILE SESSIONS
 *
 * It binds UDP 127.0.0.1 on a free port and prints "port=N", then serves
 * SESSIONS sessions one after another and exits 0. Each datagram holds
 * whole frames; ECHO, REVERSE (by bytes) and TIME are answered as the
 * original C server does, with the replies to one datagram in one
 * datagram; KEYS and unknown types get an ERROR, as from a server that
 * predates KEYS. It prints "cookie" for every HelloVerifyRequest it sent,
 * "session" for every completed handshake and "served N" at the end.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cookie.h>
#include <mbedtls/timing.h>
#include <mbedtls/x509_crt.h>

#define MSG_ERROR 0xFFFFFFFFu

static void fail_mbed(const char *what, int ret) {
	char buf[256];
	mbedtls_strerror(ret, buf, sizeof buf);
	fprintf(stderr, "mbeddtlsserver: %s: -0x%04x %s\n", what, (unsigned)-ret, buf);
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

/* append_frame appends a frame to out at *n, if it fits in cap. */
static int append_frame(unsigned char *out, size_t *n, size_t cap, uint32_t t, const unsigned char *body, size_t len) {
	if (*n + 8 + len > cap)
		return -1;
	put_u32le(out + *n, t);
	put_u32le(out + *n + 4, (uint32_t)len);
	memcpy(out + *n + 8, body, len);
	*n += 8 + len;
	return 0;
}

static int append_error(unsigned char *out, size_t *n, size_t cap, const char *reason) {
	return append_frame(out, n, cap, MSG_ERROR, (const unsigned char *)reason, strlen(reason));
}

/* answer builds the replies to the frames of one datagram. */
static size_t answer(const unsigned char *in, size_t inlen, unsigned char *out, size_t cap) {
	size_t n = 0, p = 0;
	while (p < inlen) {
		if (inlen - p < 8 || inlen - p - 8 < get_u32le(in + p + 4)) {
			append_error(out, &n, cap, "a frame must not be split across datagrams");
			break;
		}
		uint32_t t = get_u32le(in + p), len = get_u32le(in + p + 4);
		const unsigned char *body = in + p + 8;
		p += 8 + len;
		unsigned char tmp[4200];
		switch (t) {
		case 0: /* ECHO */
			append_frame(out, &n, cap, t, body, len);
			break;
		case 1: { /* REVERSE, bytes; a terminating NUL stays last */
			size_t m = len;
			int nul = m > 0 && body[m - 1] == 0;
			if (nul)
				m--;
			for (size_t i = 0; i < m && i < sizeof tmp; i++)
				tmp[i] = body[m - 1 - i];
			if (nul)
				tmp[m] = 0;
			append_frame(out, &n, cap, t, tmp, len);
			break;
		}
		case 2: { /* TIME */
			time_t now = time(NULL);
			struct tm tm;
			gmtime_r(&now, &tm);
			size_t m = strftime((char *)tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%SZ", &tm);
			if (len > 0 && body[len - 1] == 0)
				tmp[m++] = 0;
			append_frame(out, &n, cap, t, tmp, m);
			break;
		}
		case 3:
			append_error(out, &n, cap, "KEYS not supported");
			break;
		default:
			snprintf((char *)tmp, sizeof tmp, "unknown message type %u", t);
			append_error(out, &n, cap, (const char *)tmp);
		}
	}
	return n;
}

int main(int argc, char **argv) {
	if (argc != 4) {
		fprintf(stderr, "usage: mbeddtlsserver CERT_FILE KEY_FILE SESSIONS\n");
		return 2;
	}
	int sessions = atoi(argv[3]);
	int ret;
	mbedtls_net_context listen_fd, client_fd;
	mbedtls_ssl_context ssl;
	mbedtls_ssl_config conf;
	mbedtls_x509_crt cert;
	mbedtls_pk_context key;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_ssl_cookie_ctx cookies;
	mbedtls_timing_delay_context timer;
	mbedtls_net_init(&listen_fd);
	mbedtls_net_init(&client_fd);
	mbedtls_ssl_init(&ssl);
	mbedtls_ssl_config_init(&conf);
	mbedtls_x509_crt_init(&cert);
	mbedtls_pk_init(&key);
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	mbedtls_ssl_cookie_init(&cookies);

	if ((ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, (const unsigned char *)"mbeddtlsserver", 14)) != 0)
		fail_mbed("seeding the DRBG", ret);
	if ((ret = mbedtls_x509_crt_parse_file(&cert, argv[1])) != 0)
		fail_mbed("reading the certificate", ret);
	if ((ret = mbedtls_pk_parse_keyfile(&key, argv[2], NULL)) != 0)
		fail_mbed("reading the key", ret);
	if ((ret = mbedtls_net_bind(&listen_fd, "127.0.0.1", "0", MBEDTLS_NET_PROTO_UDP)) != 0)
		fail_mbed("binding", ret);
	struct sockaddr_in sa;
	socklen_t salen = sizeof sa;
	if (getsockname(listen_fd.fd, (struct sockaddr *)&sa, &salen) != 0) {
		perror("mbeddtlsserver: getsockname");
		return 1;
	}
	printf("port=%d\n", ntohs(sa.sin_port));
	fflush(stdout);

	if ((ret = mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_DATAGRAM, MBEDTLS_SSL_PRESET_DEFAULT)) != 0)
		fail_mbed("configuring", ret);
	mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
	mbedtls_ssl_conf_read_timeout(&conf, 10000);
	if ((ret = mbedtls_ssl_conf_own_cert(&conf, &cert, &key)) != 0)
		fail_mbed("setting the certificate", ret);
	if ((ret = mbedtls_ssl_cookie_setup(&cookies, mbedtls_ctr_drbg_random, &drbg)) != 0)
		fail_mbed("setting up cookies", ret);
	mbedtls_ssl_conf_dtls_cookies(&conf, mbedtls_ssl_cookie_write, mbedtls_ssl_cookie_check, &cookies);
	if ((ret = mbedtls_ssl_setup(&ssl, &conf)) != 0)
		fail_mbed("setting up", ret);
	mbedtls_ssl_set_timer_cb(&ssl, &timer, mbedtls_timing_set_delay, mbedtls_timing_get_delay);

	int served = 0;
	while (served < sessions) {
		unsigned char client_ip[16];
		size_t ip_len;
		mbedtls_net_free(&client_fd);
		mbedtls_ssl_session_reset(&ssl);
		if ((ret = mbedtls_net_accept(&listen_fd, &client_fd, client_ip, sizeof client_ip, &ip_len)) != 0)
			fail_mbed("accepting", ret);
		if ((ret = mbedtls_ssl_set_client_transport_id(&ssl, client_ip, ip_len)) != 0)
			fail_mbed("setting the client's transport id", ret);
		mbedtls_ssl_set_bio(&ssl, &client_fd, mbedtls_net_send, mbedtls_net_recv, mbedtls_net_recv_timeout);
		do
			ret = mbedtls_ssl_handshake(&ssl);
		while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
		if (ret == MBEDTLS_ERR_SSL_HELLO_VERIFY_REQUIRED) {
			printf("cookie\n");
			fflush(stdout);
			continue;
		}
		if (ret != 0) {
			char buf[256];
			mbedtls_strerror(ret, buf, sizeof buf);
			printf("handshake failed: %s\n", buf);
			fflush(stdout);
			continue;
		}
		printf("session\n");
		fflush(stdout);
		for (;;) {
			unsigned char in[4200], out[8192];
			do
				ret = mbedtls_ssl_read(&ssl, in, sizeof in);
			while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
			if (ret <= 0)
				break; /* close_notify, timeout or error: next client */
			size_t n = answer(in, (size_t)ret, out, sizeof out);
			if (n > 0) {
				do
					ret = mbedtls_ssl_write(&ssl, out, n);
				while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
				if (ret < 0)
					break;
			}
		}
		do
			ret = mbedtls_ssl_close_notify(&ssl);
		while (ret == MBEDTLS_ERR_SSL_WANT_WRITE);
		served++;
	}
	printf("served %d\n", served);
	mbedtls_net_free(&client_fd);
	mbedtls_net_free(&listen_fd);
	mbedtls_ssl_free(&ssl);
	mbedtls_ssl_config_free(&conf);
	mbedtls_ssl_cookie_free(&cookies);
	mbedtls_x509_crt_free(&cert);
	mbedtls_pk_free(&key);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
	return 0;
}
