// core/: every error the hub raises on purpose has a code (HUB_ERR_*), a message
// that says what to do, and keeps its cause.

export type HubErrorCode =
  | 'HUB_ERR_CONFIG'
  | 'HUB_ERR_UWS_FALLBACK'
  | 'HUB_ERR_UWS_LOAD'
  | 'HUB_ERR_LISTEN'
  | 'HUB_ERR_TLS'
  | 'HUB_ERR_REGISTRY'
  | 'HUB_ERR_STORE_CLOSED'
  | 'HUB_ERR_STORE'
  | 'HUB_ERR_STORE_FULL'
  | 'HUB_ERR_PASSWORD_HASH';

export class HubError extends Error {
  override readonly name: string = 'HubError';
  constructor(readonly code: HubErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export class RegistryError extends HubError {
  override readonly name = 'RegistryError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('HUB_ERR_REGISTRY', message, options);
  }
}

export class StoreError extends HubError {
  override readonly name = 'StoreError';
  constructor(code: 'HUB_ERR_STORE_CLOSED' | 'HUB_ERR_STORE' | 'HUB_ERR_STORE_FULL', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** The password-hashing thread failed or was closed while a check waited. */
export class PasswordHashError extends HubError {
  override readonly name = 'PasswordHashError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('HUB_ERR_PASSWORD_HASH', message, options);
  }
}
