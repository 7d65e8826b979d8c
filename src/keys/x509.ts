/**
 * The one place @peculiar/x509 is set up: it needs reflect-metadata loaded
 * first and a WebCrypto provider (Node's own).
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };
