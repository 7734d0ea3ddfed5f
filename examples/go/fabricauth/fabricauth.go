// Package fabricauth authenticates gRPC calls to the fabric gateway with a fabric credential (a NATS
// .creds file): every call carries the user JWT and the NKey's Ed25519 signature over the method path, a
// millisecond timestamp and a fresh nonce. Only the standard library signs; it plugs into grpc-go as
// credentials.PerRPCCredentials, which grpc-go asks for metadata on every call attempt (retries included),
// so no nonce is sent twice.
package fabricauth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"
)

// The metadata headers the gateway reads.
const (
	HeaderJWT   = "fabric-jwt"
	HeaderTS    = "fabric-ts"
	HeaderNonce = "fabric-nonce"
	HeaderSig   = "fabric-sig"
)

// Credentials signs each call with a user's NKey; it implements credentials.PerRPCCredentials.
type Credentials struct {
	jwt        string
	key        ed25519.PrivateKey
	requireTLS bool
}

var _ credentials.PerRPCCredentials = (*Credentials)(nil)

// FromFile reads a .creds file. With requireTLS, grpc-go refuses to send the credential over a
// connection without transport security (use false only for a gateway on plaintext, e.g. localhost).
func FromFile(path string, requireTLS bool) (*Credentials, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(text, requireTLS)
}

// Parse reads the text of a .creds file: the JWT and the seed blocks.
func Parse(creds []byte, requireTLS bool) (*Credentials, error) {
	jwt := block(creds, "BEGIN NATS USER JWT")
	seed := block(creds, "BEGIN USER NKEY SEED")
	if jwt == "" {
		return nil, errors.New("fabricauth: the creds file has no JWT block")
	}
	if seed == "" {
		return nil, errors.New("fabricauth: the creds file has no seed block")
	}
	raw, err := DecodeUserSeed(seed)
	if err != nil {
		return nil, err
	}
	return &Credentials{jwt: jwt, key: ed25519.NewKeyFromSeed(raw), requireTLS: requireTLS}, nil
}

// block is the first non-empty line after the line holding marker.
func block(text []byte, marker string) string {
	sc := bufio.NewScanner(bytes.NewReader(text))
	found := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !found {
			found = strings.Contains(line, marker)
			continue
		}
		if line != "" {
			if strings.HasPrefix(line, "---") {
				return ""
			}
			return line
		}
	}
	return ""
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// DecodeUserSeed decodes an encoded user seed ("SU…"): base32 (RFC 4648, no padding) of two prefix bytes
// ('S' and the key kind 'U'), the 32-byte Ed25519 seed and a little-endian CRC16 (XMODEM) of the rest.
func DecodeUserSeed(seed string) ([]byte, error) {
	raw, err := b32.DecodeString(strings.TrimSpace(seed))
	if err != nil {
		return nil, fmt.Errorf("fabricauth: the seed is not base32: %w", err)
	}
	if len(raw) != 36 {
		return nil, errors.New("fabricauth: the seed has the wrong length")
	}
	body := raw[:34]
	if crc16(body) != uint16(raw[34])|uint16(raw[35])<<8 {
		return nil, errors.New("fabricauth: the seed has a bad checksum")
	}
	if body[0]&0xf8 != 18<<3 { // 'S'
		return nil, errors.New("fabricauth: not a seed (it must start with S)")
	}
	if kind := (body[0]&7)<<5 | (body[1]&0xf8)>>3; kind != 20<<3 { // 'U'
		return nil, errors.New("fabricauth: not a user seed (it must start with SU)")
	}
	return append([]byte(nil), body[2:34]...), nil
}

func crc16(data []byte) uint16 {
	var crc uint16
	for _, b := range data {
		crc ^= uint16(b) << 8
		for i := 0; i < 8; i++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// Metadata is one call's headers: `method` is the full method path with its leading slash
// ("/fabric.v1.PublishService/Publish"). Each result is good for one call: the nonce is accepted once.
func (c *Credentials) Metadata(method string, now time.Time) (map[string]string, error) {
	if !strings.HasPrefix(method, "/") {
		return nil, fmt.Errorf("fabricauth: %q is not a full method path", method)
	}
	n := make([]byte, 24)
	if _, err := rand.Read(n); err != nil {
		return nil, err
	}
	nonce := base64.RawURLEncoding.EncodeToString(n)
	ts := strconv.FormatInt(now.UnixNano()/int64(time.Millisecond), 10)
	sig := ed25519.Sign(c.key, []byte(method+"\n"+ts+"\n"+nonce))
	return map[string]string{
		HeaderJWT:   c.jwt,
		HeaderTS:    ts,
		HeaderNonce: nonce,
		HeaderSig:   base64.RawURLEncoding.EncodeToString(sig),
	}, nil
}

// GetRequestMetadata is called by grpc-go for every call attempt. The method path comes from the request
// info in ctx (the uri arguments hold only the service's URL, without the method).
func (c *Credentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	ri, ok := credentials.RequestInfoFromContext(ctx)
	if !ok || ri.Method == "" {
		return nil, errors.New("fabricauth: no method in the request context")
	}
	return c.Metadata(ri.Method, time.Now())
}

// RequireTransportSecurity reports whether the credential may only travel over TLS.
func (c *Credentials) RequireTransportSecurity() bool { return c.requireTLS }
