package otapdf

/*
#include <stdlib.h>
#include "../include/otapdf_bridge.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/extension/extensionauth"
	"google.golang.org/grpc/credentials"
)

// Type is the component type of every otapdf factory (`otapdf`, `otapdf/<name>`).
var Type = component.MustNewType("otapdf")

// ExtensionConfig is an otap-df extension declaration: its type (`bearer_auth`,
// `azure_auth`, ...) and its own `config`.
type ExtensionConfig struct {
	Type   string         `mapstructure:"type" json:"type"`
	Config map[string]any `mapstructure:"config" json:"config,omitempty"`
	// StartupTimeout bounds the extension's readiness (`30s`); its type's default when empty.
	StartupTimeout string `mapstructure:"startup_timeout" json:"startup_timeout,omitempty"`
}

// Validate checks the declaration with otap-df: the errors name the field inside it.
func (c *ExtensionConfig) Validate() error {
	return validate(roleExtension, c)
}

// NewExtensionFactory is the factory of `extensions: otapdf/<name>`: an otap-df extension
// that provides `bearer_token_authorizer` serves as the Collector's server authenticator
// (`auth: { authenticator: otapdf/<name> }` on a receiver), one that provides
// `bearer_token_provider` as its HTTP and gRPC client authenticator (on an exporter).
func NewExtensionFactory() extension.Factory {
	return extension.NewFactory(
		Type,
		func() component.Config { return &ExtensionConfig{} },
		func(_ context.Context, _ extension.Settings, cfg component.Config) (extension.Extension, error) {
			return &authExtension{config: cfg.(*ExtensionConfig)}, nil
		},
		component.StabilityLevelAlpha,
	)
}

type authExtension struct {
	config *ExtensionConfig
	id     uint64
	header string
}

var (
	_ extensionauth.Server     = (*authExtension)(nil)
	_ extensionauth.HTTPClient = (*authExtension)(nil)
	_ extensionauth.GRPCClient = (*authExtension)(nil)
)

func (e *authExtension) Start(context.Context, component.Host) error {
	id, err := start(roleExtension, e.config, 0)
	if err != nil {
		return err
	}
	e.id = id
	if name, ok := takeString(C.otapdf_server_header(C.uint64_t(id))); ok {
		e.header = name
	}
	return nil
}

func (e *authExtension) Shutdown(context.Context) error {
	if e.id == 0 {
		return nil
	}
	id := e.id
	e.id = 0
	return stop(id)
}

// identity is the Collector's view of the caller otap-df's authorizer accepted: its name as
// `subject` (and `identity`), and the attributes the authorizer read (`oidc_auth`'s claims:
// `tenant`, `groups`), each a string, or a []string when it has several values — what the
// Collector's `headers_setter` reads with `from_attribute`.
type identity struct {
	subject    string
	attributes map[string][]string
	names      []string
}

func parseIdentity(text string) (identity, error) {
	var described struct {
		Subject    string      `json:"subject"`
		Attributes [][2]string `json:"attributes"`
	}
	if err := json.Unmarshal([]byte(text), &described); err != nil {
		return identity{}, fmt.Errorf("the authorizer's identity is not readable: %w", err)
	}
	id := identity{subject: described.Subject, attributes: map[string][]string{}, names: []string{"subject", "identity"}}
	for _, pair := range described.Attributes {
		if _, seen := id.attributes[pair[0]]; !seen {
			id.names = append(id.names, pair[0])
		}
		id.attributes[pair[0]] = append(id.attributes[pair[0]], pair[1])
	}
	return id, nil
}

func (i identity) GetAttribute(name string) any {
	if name == "subject" || name == "identity" {
		return i.subject
	}
	switch values := i.attributes[name]; len(values) {
	case 0:
		return nil
	case 1:
		return values[0]
	default:
		return values
	}
}

func (i identity) GetAttributeNames() []string { return i.names }

// Authenticate decides on the request's credential header with otap-df's authorizer; the
// caller's identity goes into the context's client.Info (`auth.subject`).
func (e *authExtension) Authenticate(ctx context.Context, headers map[string][]string) (context.Context, error) {
	if e.header == "" {
		return ctx, errors.New("this otapdf extension is not an authorizer (it provides no bearer_token_authorizer)")
	}
	value := ""
	for name, values := range headers {
		if strings.EqualFold(name, e.header) && len(values) > 0 {
			value = values[0]
			break
		}
	}
	if value == "" {
		return ctx, fmt.Errorf("missing or empty %s header", e.header)
	}
	text := []byte(value)
	data, size := bytesPointer(text)
	var detail *C.char
	code := C.otapdf_authorize(C.uint64_t(e.id), data, size, &detail)
	why, _ := takeString(detail)
	switch code {
	case 0:
		caller, err := parseIdentity(why)
		if err != nil {
			return ctx, err
		}
		info := client.FromContext(ctx)
		info.Auth = caller
		return client.NewContext(ctx, info), nil
	case 1:
		return ctx, fmt.Errorf("credential refused (%s)", why)
	default:
		return ctx, fmt.Errorf("no decision on the credential, refusing: %s", why)
	}
}

// clientHeader is the header to send with the provider's current token.
func (e *authExtension) clientHeader() (string, string, error) {
	var name, value *C.char
	code := C.otapdf_client_header(C.uint64_t(e.id), &name, &value)
	header, _ := takeString(name)
	text, _ := takeString(value)
	if code != 0 {
		return "", "", errors.New(text)
	}
	return header, text, nil
}

type roundTripper struct {
	base      http.RoundTripper
	extension *authExtension
}

func (r roundTripper) RoundTrip(request *http.Request) (*http.Response, error) {
	name, value, err := r.extension.clientHeader()
	if err != nil {
		return nil, err
	}
	signed := request.Clone(request.Context())
	signed.Header.Set(name, value)
	return r.base.RoundTrip(signed)
}

// RoundTripper signs each request with the provider's current token.
func (e *authExtension) RoundTripper(base http.RoundTripper) (http.RoundTripper, error) {
	return roundTripper{base: base, extension: e}, nil
}

type perRPC struct{ extension *authExtension }

func (p perRPC) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	name, value, err := p.extension.clientHeader()
	if err != nil {
		return nil, err
	}
	return map[string]string{strings.ToLower(name): value}, nil
}

// RequireTransportSecurity: a bearer token goes over TLS only, as the Collector's own
// bearer-token extension requires.
func (perRPC) RequireTransportSecurity() bool { return true }

// PerRPCCredentials signs each call with the provider's current token.
func (e *authExtension) PerRPCCredentials() (credentials.PerRPCCredentials, error) {
	return perRPC{extension: e}, nil
}
