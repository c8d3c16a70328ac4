/**
 * Addresses are `host:port`; an IPv6 host goes in brackets (`[::1]:4000`).
 * Hosts are IP literals or DNS names; nothing else is accepted.
 */
import { isIP } from 'node:net';
import { InvalidAddressError } from '@clusterinfra/core';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** Parse `host:port`. `allowZeroPort` is for listen addresses. */
export function parseAddress(address: unknown, allowZeroPort = false): HostPort {
  if (typeof address !== 'string') throw new InvalidAddressError(String(address), 'not a string');
  let host: string;
  let portText: string;
  if (address.startsWith('[')) {
    const close = address.indexOf(']');
    if (close < 0 || address[close + 1] !== ':') throw new InvalidAddressError(address, 'expected [ipv6]:port');
    host = address.slice(1, close);
    portText = address.slice(close + 2);
    if (isIP(host) !== 6) throw new InvalidAddressError(address, 'not an IPv6 address in brackets');
  } else {
    const colon = address.lastIndexOf(':');
    if (colon <= 0) throw new InvalidAddressError(address, 'expected host:port');
    host = address.slice(0, colon);
    portText = address.slice(colon + 1);
    if (host.includes(':')) throw new InvalidAddressError(address, 'an IPv6 host must be in brackets');
    if (isIP(host) !== 4 && !HOSTNAME.test(host)) throw new InvalidAddressError(address, 'bad host');
  }
  if (!/^\d{1,5}$/.test(portText)) throw new InvalidAddressError(address, 'bad port');
  const port = Number(portText);
  if (port > 65535 || (port === 0 && !allowZeroPort)) throw new InvalidAddressError(address, 'port out of range');
  return { host, port };
}

export function formatAddress(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A bare host for listening: an IP literal or a DNS name. */
export function isValidHost(host: string): boolean {
  return isIP(host) !== 0 || HOSTNAME.test(host);
}
