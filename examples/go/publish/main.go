// Command publish calls the fabric gateway's /fabric.v1.PublishService/Publish with a .creds file and
// prints the reply as JSON. The request and reply are encoded by hand (a few protobuf fields), so the
// example needs no generated code:
//
//	publish -addr 127.0.0.1:50051 -creds fleet-dev-service.creds -subject telemetry.plant-a.d1.temp -data '{"value":1}'
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"fabricexamples/fabricauth"
)

const publishMethod = "/fabric.v1.PublishService/Publish"

type publishRequest struct {
	Subject        string
	Data           []byte
	IdempotencyKey string
}

type publishResponse struct {
	Stream    string `json:"stream"`
	Sequence  uint64 `json:"sequence"`
	Duplicate bool   `json:"duplicate"`
}

// rawCodec encodes the two messages above in the protobuf wire format (fields of fabric/v1/publish.proto).
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func appendField(b []byte, field int, value []byte) []byte {
	if len(value) == 0 {
		return b
	}
	b = binary.AppendUvarint(b, uint64(field<<3|2))
	b = binary.AppendUvarint(b, uint64(len(value)))
	return append(b, value...)
}

func (rawCodec) Marshal(v interface{}) ([]byte, error) {
	req, ok := v.(*publishRequest)
	if !ok {
		return nil, fmt.Errorf("cannot encode %T", v)
	}
	var b []byte
	b = appendField(b, 1, []byte(req.Subject))
	b = appendField(b, 2, req.Data)
	b = appendField(b, 4, []byte(req.IdempotencyKey))
	return b, nil
}

func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	res, ok := v.(*publishResponse)
	if !ok {
		return fmt.Errorf("cannot decode into %T", v)
	}
	for len(data) > 0 {
		key, n := binary.Uvarint(data)
		if n <= 0 {
			return errors.New("bad field key")
		}
		data = data[n:]
		switch key & 7 {
		case 0:
			val, m := binary.Uvarint(data)
			if m <= 0 {
				return errors.New("bad varint")
			}
			data = data[m:]
			switch key >> 3 {
			case 2:
				res.Sequence = val
			case 3:
				res.Duplicate = val != 0
			}
		case 2:
			l, m := binary.Uvarint(data)
			if m <= 0 || uint64(len(data)-m) < l {
				return errors.New("bad length")
			}
			if key>>3 == 1 {
				res.Stream = string(data[m : m+int(l)])
			}
			data = data[m+int(l):]
		default:
			return fmt.Errorf("unexpected wire type %d", key&7)
		}
	}
	return nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "the gateway's host:port")
	credsPath := flag.String("creds", "", "the fabric credential (.creds file)")
	subject := flag.String("subject", "telemetry.plant-a.d1.temp", "the subject to publish to")
	data := flag.String("data", `{"value":1}`, "the message body")
	key := flag.String("key", "", "an idempotency key (stored once however often it is sent)")
	ca := flag.String("ca", "", "a CA certificate (PEM): connect with TLS; without it, plaintext")
	timeout := flag.Duration("timeout", 10*time.Second, "the call's deadline")
	count := flag.Int("count", 1, "publish this many times on the one connection")
	flag.Parse()
	if *credsPath == "" {
		fmt.Fprintln(os.Stderr, "publish: -creds is required")
		os.Exit(2)
	}

	// the credential may travel without TLS only when -ca is not given (a plaintext gateway)
	creds, err := fabricauth.FromFile(*credsPath, *ca != "")
	if err != nil {
		fmt.Fprintln(os.Stderr, "publish:", err)
		os.Exit(1)
	}
	opts := []grpc.DialOption{grpc.WithPerRPCCredentials(creds)}
	if *ca != "" {
		tlsCreds, err := credentials.NewClientTLSFromFile(*ca, "")
		if err != nil {
			fmt.Fprintln(os.Stderr, "publish:", err)
			os.Exit(1)
		}
		opts = append(opts, grpc.WithTransportCredentials(tlsCreds))
	} else {
		opts = append(opts, grpc.WithInsecure())
	}
	conn, err := grpc.Dial(*addr, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "publish:", err)
		os.Exit(1)
	}
	defer conn.Close()

	req := &publishRequest{Subject: *subject, Data: []byte(*data), IdempotencyKey: *key}
	for i := 0; i < *count; i++ {
		// every call (and every retry) gets fresh metadata from fabricauth: a nonce is accepted once
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		var res publishResponse
		err := conn.Invoke(ctx, publishMethod, req, &res, grpc.ForceCodec(rawCodec{}))
		cancel()
		if err != nil {
			st := status.Convert(err)
			fmt.Fprintf(os.Stderr, "grpc error code=%d (%s): %s\n", st.Code(), st.Code(), st.Message())
			os.Exit(1)
		}
		out, _ := json.Marshal(res)
		fmt.Println(string(out))
	}
}
