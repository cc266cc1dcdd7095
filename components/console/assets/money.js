// Money on the page: integers in minor units (CONTRACT section 7), written
// out digit by digit, never through floating point.

/** The digits of an integer amount as the API sent it ("-150000"), or null when it is not one. */
function digitsOf(n) {
  if (typeof n === 'bigint') return n.toString();
  if (typeof n === 'number') return Number.isInteger(n) ? BigInt(n).toString() : null;
  if (typeof n === 'string' && /^-?\d+$/.test(n)) return n;
  return null;
}

/** Groups the digits of a non-negative integer by thousands: "1234567" → "1,234,567". */
const group = (digits) => digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');

/** An amount in minor units as the page shows it: "-1,234,567" ("—" for none). */
export function fmtMinor(n) {
  if (n === null || n === undefined || n === '') return '—';
  const d = digitsOf(n);
  if (d === null) return String(n);
  return d.startsWith('-') ? `-${group(d.slice(1))}` : group(d);
}

/** The minor-unit digits of a currency (ISO 4217, as the browser knows it), or null when unknown. */
export function currencyExponent(currency) {
  if (typeof currency !== 'string' || !/^[A-Z]{3}$/.test(currency)) return null;
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
  } catch (_) {
    return null;
  }
}

/**
 * An amount in minor units in the currency's major units, by moving the
 * decimal point in the digits: 123456 USD → "1,234.56 USD"; null when the
 * amount or the currency is unknown.
 */
export function fmtMajor(n, currency) {
  const d = digitsOf(n);
  const exp = currencyExponent(currency);
  if (d === null || exp === null) return null;
  const neg = d.startsWith('-');
  const abs = (neg ? d.slice(1) : d).padStart(exp + 1, '0');
  const int = group(abs.slice(0, abs.length - exp));
  const frac = exp ? `.${abs.slice(abs.length - exp)}` : '';
  return `${neg ? '-' : ''}${int}${frac} ${currency}`;
}

/** Shows an amount in a cell: the minor units as text, the raw integer in `data-minor`, major units in the title. */
export function setMoney(el, n, currency) {
  const text = fmtMinor(n);
  if (el.textContent !== text) el.textContent = text;
  const raw = digitsOf(n);
  if (raw === null) el.removeAttribute('data-minor');
  else if (el.getAttribute('data-minor') !== raw) el.setAttribute('data-minor', raw);
  const major = fmtMajor(n, currency);
  const title = major ? `${major} (${text} minor units)` : null;
  if (title === null) el.removeAttribute('title');
  else if (el.getAttribute('title') !== title) el.setAttribute('title', title);
}

/** The sum of integer amounts, exactly (BigInt); null when one of them is not an integer. */
export function sumMinor(values) {
  let total = 0n;
  for (const v of values) {
    const d = digitsOf(v);
    if (d === null) return null;
    total += BigInt(d);
  }
  return total;
}

/**
 * What the amount field holds, for the request body: a number is sent as the
 * JSON number typed, character for character (so the API judges it, even an
 * integer past 2^53 or a fraction), anything else as a string. Either way the
 * API decides, with its own message.
 */
export function amountJson(typed) {
  const s = typed.trim();
  return /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/.test(s) ? s : JSON.stringify(s);
}
