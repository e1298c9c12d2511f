"""Mask card numbers, e-mail addresses, phone numbers, national ids and IBANs before anything
leaves the edge.

Texts are masked right after decoding, so the model, the internal topic and every output see
``[card]``/``[email]``/``[phone]``/``[id]``/``[iban]`` instead; ids that carry any of these are
pseudonymised or refused (``stream.core.policy``). Dead letters keep the original bytes (nothing
is lost) but masked the same way after decoding them in their own encoding (UTF-8, or UTF-16/32
by BOM or by their NUL bytes), so a bad record cannot leak PII either; bytes that decode to no
text are masked aggressively (every run of 7+ digits, every token around an ``@``, in the ASCII,
UTF-16 and UTF-32 views) or, by policy, not kept at all. The dead letter's ``detail`` is masked
like a text, so the counts an operator needs in it (``3600000 s ahead``, ``10485760 bytes``,
``offset 12345678901``) stay.

What counts, and what is left alone (measured per class on a labelled corpus of PII and
look-alikes: ``tests/stream/pii_corpus.py``, ``bench/pii_masker.py``, ``docs/evaluation.md``):

* card: 13-19 digits passing the Luhn check with a card network's prefix (3, 4, 5, 6,
  2221-2720), one group or 4 digits then groups of 3-6 with any separators (spaces, several
  spaces, dashes, slashes, dots), so order numbers, prices, dates, lists of years, parcel
  numbers (USPS ``9400 ...``) and epoch milliseconds are left alone;
* e-mail: ``local@domain.tld``, with U+FF20 or U+FE6B for ``@``, non-ASCII letters in the
  local part and internationalised domains (``例子.公司``, ``bücher.de``, ``xn--...``);
* iban (``[iban]``): a country code of the IBAN registry, two check digits and the BBAN,
  grouped by single spaces or not (``GB82 WEST 1234 5698 7654 32``, ``IBANDE89...``), of the
  country's length and passing the ISO 7064 mod-97 check;
* national id (``[id]``): a Chinese resident id (18 characters: region, a birth date, its
  check character), a US SSN (``123-45-6789`` or spaced; not area 000, 666, 9xx, group 00,
  serial 0000; 9 bare digits only after ``SSN``/``social``), a UK National Insurance number
  (``AB 12 34 56 C``, valid prefixes only);
* phone: what ``phonenumbers.PhoneNumberMatcher`` accepts at leniency VALID for a region of
  :data:`PHONE_REGIONS` (international ``+...`` numbers of every region, and ``00...`` or
  after ``wa.me/``), also for :data:`MORE_PHONE_REGIONS` when written with separators or
  after a phone word, on a folded view of the text (full-width digits, en dashes, no-break
  spaces: ASCII). Glued to a word that says phone or to a lower-case word (``call1381...``,
  ``WhatsApp+86...``, ``tel0791...``), to CJK or emoji, it counts. A national number does not
  count with fewer than 8 digits (``ord-0500123`` is a valid short German number), glued to
  capitals (``XK7712345680``) or to a word by ``-_#`` (``ord-13800138000``), after a word that
  names an id (``order 2461357920``, ``offset``, ``P/N``), as a date, a version
  (``10.0.19045.3693``), a count with its unit (``3600000 s``, ``4096 bytes``), (up to 10
  digits) an amount (``1234567.5``, ``$ 4155552671``), nor as bare digits without a trunk
  prefix, 10 or fewer or 12 and more of them, unless a phone word (``call``, ``电话``, ``📞``,
  ...) or a phone number comes shortly before: ``7712345680`` alone is an order number as often
  as a phone number.

Every pattern runs in linear time (bounded parts, every start anchored at the start of a run):
a 70 kB run of letters took 2.7 s with the first e-mail pattern; 100 kB of adversarial digits
and letters mask in well under a second (``tests/stream/test_pii.py``). ``phonenumbers`` is
called only on runs of 8+ digits (or with a ``+``) that the checks above leave open, at most
:data:`PHONE_BUDGET` times per text.
"""

from __future__ import annotations

import bisect
import codecs
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import Literal

import phonenumbers

# --------------------------------------------------------------------------------------------
# Which fields carry free text, and which are ids.

# --------------------------------------------------------------------------------------------
# A 1:1 folded view of the text: same length, so every position found in it is a position in
# the original. Full-width forms, other decimal digits, dashes, @ and space look-alikes become
# their ASCII selves; zero-width characters become spaces (they only hide separators).


def _fold_table() -> dict[int, int]:
    table: dict[int, int] = {}
    for code in range(0x80, 0x110000):
        char = chr(code)
        if unicodedata.category(char) == "Nd":
            table[code] = ord("0") + unicodedata.decimal(char)
    for code in range(0xFF01, 0xFF5F):  # full-width ASCII
        table[code] = code - 0xFF01 + 0x21
    for code in (0xFE6B,):  # small commercial at (the full-width one is U+FF20 above)
        table[code] = ord("@")
    for code in (*range(0x2010, 0x2016), 0x2212, 0xFE58, 0xFE63, 0x30FC):  # dashes, minus, ー
        table[code] = ord("-")
    spaces = (0xA0, 0x1680, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000)
    zero_width = (0xAD, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF)
    for code in (*spaces, *zero_width):
        table[code] = ord(" ")
    return table


_FOLD = _fold_table()


def _char_class(codes: Iterable[int]) -> str:
    ranges: list[list[int]] = []
    for code in sorted(codes):
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(
        re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in ranges
    )


#: Folded only where it matters (so CJK prose, full of full-width commas and exclamation
#: marks, is mostly left as it is: 20x faster than translating all of it).
_FOLDABLE = re.compile(
    "[{}]+".format(
        _char_class(
            code
            for code, to in _FOLD.items()
            if chr(to).isalnum() or chr(to) in " @.+-()/_%~" or code in range(0x2000, 0x2070)
        )
    )
)


def fold(text: str) -> str:
    """The text with look-alikes replaced character for character (same length)."""
    if text.isascii():
        return text
    return _FOLDABLE.sub(lambda m: m.group().translate(_FOLD), text)


# --------------------------------------------------------------------------------------------
# E-mail addresses.

#: Letters of scripts written without spaces (CJK ideographs, kana, hangul): a local part or
#: domain label never runs into them, so ``请联系jane@x.com`` masks only the address.
_CJK = (
    "\u2e80-\u2fdf\u3040-\u30fa\u30fc-\u30ff\u3100-\u312f\u3131-\u318f\u31a0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7af\uf900-\ufaff\uff66-\uffdc"
    "\U00020000-\U0003ffff"
)
_LOCAL = rf"(?:[^\W{_CJK}]|[.%+\-])"  # ASCII atext subset, "_", non-CJK letters and digits
_LABEL_L = rf"(?:[^\W_{_CJK}]|-)"  # ASCII or other non-CJK letters, digits, hyphen
_LABEL_C = rf"[{_CJK}0-9\-]"
_LABEL = rf"(?:{_LABEL_L}{{1,63}}|{_LABEL_C}{{1,63}})"
_TLD = (
    rf"(?:xn--[A-Za-z0-9\-]{{1,59}}(?!{_LABEL_L})"  # punycode
    rf"|[^\W\d_{_CJK}]{{2,24}}(?!{_LABEL_L})"  # letters: .com, .de, .рф
    rf"|[{_CJK}]{{2,4}})"  # .公司, .中国 (may take a character or two of the text after it)
)
#: Starts only where a run of local-part characters starts and bounds each part (RFC 5321
#: lengths), so a 70 kB run of letters costs linear time instead of quadratic (a ReDoS that
#: profiling of dead-lettered oversized records found: 2.7 s per record before). Run on the
#: folded text, where U+FF20 and U+FE6B are ``@``.
EMAIL = re.compile(rf"(?<!{_LOCAL}){_LOCAL}{{1,64}}@(?:{_LABEL}\.){{0,8}}{_TLD}")

# --------------------------------------------------------------------------------------------
# Cards and phone numbers: both start from a run of digits and separators.

#: A run of 7+ digits, at most three separator characters between two digits; a ``+`` or
#: ``(`` may lead. The only candidates for cards and phones (and the cheap prefilter in front
#: of ``phonenumbers``, which costs ~40 µs per region and call).
DIGIT_RUN = re.compile(r"[+(]?[0-9](?:[ ().\-/~]{0,3}[0-9]){6,}")
_GROUP = re.compile(r"[0-9]+")
_YEARS = re.compile(r"(?:19[0-9]{2}|20[0-9]{2})+")

#: Default regions for numbers written without ``+``; the first one found wins. International
#: numbers (``+33 1 42 68 53 00``) are found whatever the region.
PHONE_REGIONS: tuple[str, ...] = ("CN", "US", "GB", "DE", "FR")
#: Regions also tried for a national number that is written with separators or parentheses
#: (``090-1234-5678``, ``(11) 96123-4567``) or after a word that says phone: each costs a
#: ``phonenumbers`` call, so bare digit runs (ids, counts) are not tried in all of them.
MORE_PHONE_REGIONS: tuple[str, ...] = ("IN", "BR", "JP", "KR", "RU", "NG", "ID", "MX")
#: A national number needs this many digits: 7-digit strings are valid short German numbers
#: about 8 % of the time, and order numbers.
MIN_NATIONAL_DIGITS = 8
#: A run that is a calendar date (``2026-11-23``, ``23.11.2026``, maybe an hour after it):
#: skipped before ``phonenumbers`` (which rejects it too, at ~150 µs for five regions).
_DATE_RUN = re.compile(
    r"(?:(?:19|20)[0-9]{2}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12][0-9]|3[01])"
    r"|(?:0?[1-9]|[12][0-9]|3[01])[-/.](?:0?[1-9]|1[0-2])[-/.](?:19|20)[0-9]{2})"
    r"(?: [0-9]{1,2})?"
)
#: A number glued to a word by ``-``, ``_`` or ``#`` is part of an identifier (``ord-0500123``,
#: ``SKU_4155552671``), unless the word says phone.
_ID_PREFIX = re.compile(r"(?<![A-Za-z])([A-Za-z]{1,12})[-_#]\Z")
_PHONE_WORDS = frozenset(
    {"tel", "phone", "mobile", "mob", "cell", "fax", "call", "sms", "wa", "whatsapp", "vx", "wx"}
)
#: ... or follows a word that names an identifier (``order 2461357920`` is a valid US number;
#: not "ID" nor "account": a WeChat ID or an Alipay account often is a phone number).
_ID_WORD_BEFORE = re.compile(
    r"(?i)(?<![A-Za-z])(?:order|ord|invoice|inv|tracking|parcel|sku|ref|reference|item|article"
    r"|ticket|case|po|p/n|pn|part|model|batch|lot|ean|upc|gtin|isbn|asin|offset|lag|limit|size"
    r"|seq|sequence|epoch|ts|timestamp|version|ver|build|v"
    r"|bestell(?:ung|nummer|nr)?|auftrag(?:snummer)?|rechnung|commande|facture|pedido|factura"
    r"|ordine|заказ)"
    r"(?: ?(?:no|nr|number|id)\.?)? ?[:#=]? ?\Z"
    r"|(?:订单|单号|运单|型号|批号|注文番号|注文|주문)号?[:#]? ?\Z"
    r"|(?<![A-Za-z0-9])#\Z"
)
#: A count with its unit right after it (``3600000 s ahead``, ``10485760 bytes``, ``500 ms``):
#: a duration, a size or a count in a log-like detail, not a phone number.
_UNIT_AFTER = re.compile(
    r" ?(?:ms|s|µs|us|ns|sec|secs|seconds?|mins?|minutes?|h|hrs?|hours?|days?|bytes?|B|[kKMGT]i?B"
    r"|records?|events?|messages?|msgs|keys|rows|items|votes|reviews|times|%|秒|毫秒|字节|条)"
    r"(?![A-Za-z])"
)
#: Words that say a phone number follows (up to :data:`_CUE_SPAN` characters before it), in
#: the languages of the corpus. A national number written as bare digits (``4155552671``) is
#: one only after such a word: without it, it reads as an order or ticket number.
_PHONE_CUE = re.compile(
    r"(?i)(?:(?<![A-Za-z])(?:tel|tele|phone|call|ring|mobile|mob|cell|whats ?app|wa|sms|text"
    r"|fax|contact|reach|dial|hotline|viber|telegram|wechat|weixin|vx|wx|hp|telefon\w*"
    r"|t[eé]l[eé]phone|portable|handy|celular|ligue|llama|nomor)"
    r"|телефон|тел|звоните|номер|电话|電話|手机|手機|微信|联系|聯繫|联络|致电|拨打|携帯|連絡"
    r"|전화|연락|휴대폰|핸드폰|\U0001f4de|\U0001f4f1|\u260e|\u260f)"  # 📞 📱 ☎ ☏
)
_CUE_SPAN = 32
#: A number written after these is international without its ``+`` (``wa.me/4479...``).
_INTERNATIONAL_BEFORE = re.compile(r"(?i)(?:wa\.me/|[?&]phone=)\Z")
#: Dotted runs that read as versions (``17.21.414.7315``, ``0.69.39337``): a first group of
#: one or two digits that is not a trunk prefix, only dots, 3+ groups.
_YEAR_LIST = re.compile(r"(?:19|20)[0-9]{2}(?:[ ./\-]{1,3}(?:19|20)[0-9]{2})+")
_VERSION_RUN = re.compile(r"(?:0|[1-9][0-9]?)(?:\.[0-9]+){2,}")
#: What makes a digit run an amount rather than a phone number: decimals right after it, a
#: currency sign or a common currency code next to it, a digit and a decimal mark before it.
_DECIMAL_AFTER = re.compile(r"[.,][0-9]{1,3}(?![0-9])")
_DECIMAL_END = re.compile(r"[.,][0-9]{1,2}\Z")
_CURRENCY_CODES = (
    "USD|EUR|GBP|CNY|RMB|JPY|HKD|TWD|KRW|INR|CHF|CAD|AUD|NZD|SGD|RUB|BRL|MXN|SEK|NOK|DKK|PLN"
)
_CURRENCY_AFTER = re.compile(rf" ?(?:[元円圆圓块塊]|(?:{_CURRENCY_CODES})(?![A-Za-z]))")
_CURRENCY_BEFORE = re.compile(rf"(?<![A-Za-z])(?:{_CURRENCY_CODES}) ?\Z")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card_prefix(digits: str) -> bool:
    """An issuer prefix of the card networks: 3 (Amex, Diners, JCB), 4 (Visa), 5 (Mastercard,
    Maestro), 6 (Discover, UnionPay, Maestro), 2221-2720 (Mastercard). Not 1, 7, 8, 9 (airline,
    petroleum, telecom and national schemes; USPS and FedEx numbers, epoch milliseconds)."""
    return digits[0] in "3456" or 2221 <= int(digits[:4]) <= 2720


def _continues_left(run: str, groups: list[tuple[int, int]], i: int) -> bool:
    """Group ``i`` is the middle of a longer grouping (``9400 3335 2677 2652 3934 10``, a
    22-digit parcel number): the group before it has 4 digits and the same separator."""
    if i + 1 >= len(groups) or groups[i - 1][1] - groups[i - 1][0] != 4:
        return False
    return run[groups[i - 1][1] : groups[i][0]] == run[groups[i][1] : groups[i + 1][0]]


def _card_spans(run: str, offset: int) -> list[tuple[int, int]]:
    """Luhn-valid card numbers in a digit run: a whole group of 13-19 digits, or 4 digits
    then groups of 3-6 (cards print as 4-4-4-4, 4-6-5, 4-6-4, 4-4-4-4-3, any separators),
    the longest that passes from each group on, with a card network's prefix. Not a list of
    years (``2019 2020 2021 2022``) nor a 7-digit order number, a year range and a price that
    happen to pass Luhn."""
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(run)]
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(groups):
        if i > 0 and _continues_left(run, groups, i):
            i += 1
            continue
        best = None
        digits = ""
        for j in range(i, len(groups)):
            start, end = groups[j]
            if j > i and not (groups[i][1] - groups[i][0] == 4 and 3 <= end - start <= 6):
                break
            digits += run[start:end]
            if len(digits) > 19:
                break
            if (
                len(digits) >= 13
                and _card_prefix(digits)
                and luhn_valid(digits)
                and not _YEARS.fullmatch(digits)
            ):
                best = j
        if best is None:
            i += 1
            continue
        spans.append((offset + groups[i][0], offset + groups[best][1]))
        i = best + 1
    return spans


def _is_identifier(folded: str, start: int) -> bool:
    prefix = _ID_PREFIX.search(folded, max(0, start - 13), start)
    if prefix is not None and prefix.group(1).lower() not in _PHONE_WORDS:
        return True
    return _ID_WORD_BEFORE.search(folded, max(0, start - 24), start) is not None


def _looks_like_amount(folded: str, start: int, end: int) -> bool:
    before = folded[max(0, start - 4) : start]
    if before.endswith((".", ",")) and before[-2:-1].isdigit():
        return True
    stripped = before.rstrip(" ")
    if (stripped and unicodedata.category(stripped[-1]) == "Sc") or _CURRENCY_BEFORE.search(before):
        return True
    after = folded[end : end + 2].lstrip(" ")
    if after and unicodedata.category(after[0]) == "Sc":
        return True
    return bool(_DECIMAL_AFTER.match(folded, end) or _CURRENCY_AFTER.match(folded, end))


@functools.cache
def _national_lengths(region: str) -> frozenset[int]:
    """Digit counts a national number of ``region`` may have, with or without its trunk
    prefix (from the ``phonenumbers`` metadata)."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    lengths = set(metadata.general_desc.possible_length)
    prefix = len(metadata.national_prefix or "")
    return frozenset(lengths | {n + prefix for n in lengths})


def _may_be_national(region: str, n_digits: int) -> bool:
    # a run may hold the number and a few digits more (the matcher finds it inside)
    return any(n <= n_digits for n in _national_lengths(region)) and n_digits <= 4 + max(
        _national_lengths(region)
    )


def _has_cue(folded: str, start: int) -> bool:
    return _PHONE_CUE.search(folded, max(0, start - _CUE_SPAN), start) is not None


_LETTERS_BEFORE = re.compile(r"[A-Za-z]{1,16}\Z")
_LETTERS_AFTER = re.compile(r"[A-Za-z]{1,16}")


def _glued_to_code(folded: str, start: int, end: int) -> bool:
    """A number glued to capitals (``XK7712345680``, ``SF123456789012``, ``4155552671X``) is
    part of a code; glued to a word that says phone or to a lower-case word
    (``call13812345678``, ``WhatsApp13812345678``, ``13812345678thanks``) it is not."""
    before = _LETTERS_BEFORE.search(folded, max(0, start - 16), start)
    if before is not None:
        word = before.group()
        if word.lower() in _PHONE_WORDS or _PHONE_CUE.fullmatch(word):
            return False
        if word.isupper():
            return True
    after = _LETTERS_AFTER.match(folded, end)
    return after is not None and after.group().isupper()


def _national_phone(folded: str, raw: str, start: int, end: int, *, cued: bool) -> bool:
    """Whether a number the matcher found in national form (no ``+``) is a phone number
    rather than an amount, an id, a date, a count, a version or a code."""
    n_digits = sum(c.isdigit() for c in raw)
    if n_digits < MIN_NATIONAL_DIGITS:
        return False
    # 11+ digits (CN mobiles) are no amount in a review, whatever is next to them
    if n_digits <= 10 and _looks_like_amount(folded, start, end):
        return False
    if _is_identifier(folded, start) or _DATE_RUN.fullmatch(raw.strip("()")):
        return False
    # ... or ends in one: ``0100000 0.00`` is an FR number; dotted ones have more dots
    if raw.count(".") + raw.count(",") == 1 and _DECIMAL_END.search(raw):
        return False
    cue = cued or _has_cue(folded, start)
    # ``3600000 s ahead``, ``10485760 bytes``; after a phone word a unit-like letter is not one
    # (``电话 13800138000 B``)
    if _UNIT_AFTER.match(folded, end) and not cue:
        return False
    if not cue and (_glued_to_code(folded, start, end) or _VERSION_RUN.fullmatch(raw)):
        return False
    # Bare digits without a trunk prefix: 10 (a US number) and 11 (a CN mobile, a US number
    # with its 1) fail closed, since a phone number left in the text is a leak and an order
    # number keeps its id word (``order``, ``#``, ``订单``: left alone above); 8-9 or 12 and
    # more are an account number or a timestamp as often as a phone, unless a word says phone.
    return cue or not raw.isdigit() or n_digits in (10, 11) or raw.startswith("0")


#: A run longer than this is searched in overlapping windows (every number of up to half of
#: it falls whole into one).
_PHONE_WINDOW = 64
#: ``phonenumbers`` calls (one region, one window: 40 µs for a phone-sized window, up to
#: 400 µs for 64 characters of digits) one text may cost. Past it, what is left of the digit
#: runs is masked as ``[digits]``: fail closed, and deterministic (replays see the same mask)
#: where a time limit would not be. A normal text needs one to five calls per number.
PHONE_BUDGET = 60


def _phone_spans(
    folded: str,
    start: int,
    end: int,
    regions: tuple[str, ...],
    budget: list[int],
    *,
    trim: bool = True,
    cued: bool = False,
) -> list[tuple[int, int, str]]:
    """Phone numbers ``phonenumbers`` finds in one digit run (one character of context each
    side, which is all the matcher looks at to reject ``abc8005001234``). ``cued``: a phone
    number ends shortly before the run (``13800138000 or 4155552671``), which says phone like a
    word would."""
    if end - start > _PHONE_WINDOW:
        if folded[start:end].isdigit():
            return []  # the matcher finds no number inside bare digits (it splits on signs)
        step = _PHONE_WINDOW // 2
        spans: set[tuple[int, int, str]] = set()
        for at in range(start, end - step, step):
            if budget[0] <= 0:
                return [*sorted(spans), (at, end, "[digits]")]
            window_end = min(end, at + _PHONE_WINDOW)
            spans.update(_phone_spans(folded, at, window_end, regions, budget, cued=cued))
        return sorted(spans)
    if _GROUP.fullmatch(folded, start, end) and _is_identifier(folded, start):
        return []  # ``order 2461357920``: the matcher would say the same, at 200 µs
    if budget[0] <= 0:
        return [(start, end, "[digits]")]
    lo = max(0, start - 1)
    hi = min(len(folded), end + 1)
    window = list(folded[lo:hi])
    # The matcher rejects a number with a Latin letter next to it (``call13812345678``): the
    # letters are judged here instead (``_national_phone``), so it sees a space.
    if lo < start and window[0].isascii() and window[0].isalpha():
        window[0] = " "
    if hi > end and window[-1].isascii() and window[-1].isalpha():
        window[-1] = " "
    # International without its ``+``: ``0033 1 42 68 53 00``, ``wa.me/4479...``. Same length,
    # so positions stay; the span is widened back to the run below.
    international = False
    if folded.startswith("00", start) and folded[start + 2 : start + 3] in set("123456789"):
        window[start - lo : start - lo + 2] = [" ", "+"]
        international = True
    elif lo < start and _INTERNATIONAL_BEFORE.search(folded, max(0, start - 8), start):
        window[0] = "+"
        international = True
    window_text = "".join(window)
    run = folded[start:end]
    cued = cued or _has_cue(folded, start)
    if (
        not international
        and run.isdigit()
        and not _national_phone(folded, run, start, end, cued=cued)
    ):
        # bare digits: the matcher would find the whole run or nothing, judged the same way
        return []
    if (
        not international
        and not cued
        and (_VERSION_RUN.fullmatch(run) or _YEAR_LIST.fullmatch(run))
    ):
        return []  # ``10.0.19045.3693``, ``1998-2024``: not worth 13 calls to say so
    digits_at = {i for i in range(start - lo, end - lo) if window_text[i].isdigit()}
    covered: set[int] = set()
    found: list[tuple[int, int, str]] = []
    tried: tuple[str | None, ...] = (None, *regions) if "+" in window_text else regions
    if not run.isdigit() or cued:  # national forms of more regions: see MORE_PHONE_REGIONS
        n_digits = sum(c.isdigit() for c in run)
        tried += tuple(
            r for r in MORE_PHONE_REGIONS if r not in regions and _may_be_national(r, n_digits)
        )
    for region in tried:
        if budget[0] <= 0:
            break
        budget[0] -= 1
        for match in phonenumbers.PhoneNumberMatcher(
            window_text, region, leniency=phonenumbers.Leniency.VALID
        ):
            raw = match.raw_string
            m_start, m_end = max(start, lo + match.start), min(end, lo + match.end)
            if raw.lstrip("(").startswith("+"):  # international: an amount has no +
                if international and m_start <= start + 2:
                    m_start = start
            elif not _national_phone(folded, raw, m_start, m_end, cued=cued):
                continue
            found.append((m_start, m_end, "[phone]"))
            covered.update(range(m_start - lo, m_end - lo))
        if digits_at <= covered:
            return found
    if trim and not covered:
        # The matcher tries a run whole, then single groups: ``+33 1 42 68 53 00 0/0`` (a
        # number right after the phone number) is found without what follows the last space,
        # or precedes the first (``978-3-16-148410-0`` has no space: one thing, an ISBN).
        groups = [m.span() for m in _GROUP.finditer(folded, start, end)]
        spaced = [
            i
            for i in range(1, len(groups))
            if not folded[groups[i - 1][1] : groups[i][0]].strip(" ")
        ]
        if spaced:
            for sub_start, sub_end in (
                (start, groups[spaced[-1] - 1][1]),
                (groups[spaced[0]][0], end),
            ):
                found += _phone_spans(
                    folded, sub_start, sub_end, regions, budget, trim=False, cued=cued
                )
    return found


# --------------------------------------------------------------------------------------------
# IBANs and national ids.

#: IBAN length per country (the SWIFT IBAN registry); a country not listed is no IBAN.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
#: A country code, two check digits and up to 30 letters and digits, grouped by single spaces
#: or not; it may follow ``IBAN`` without a space. Bounded: linear.
_IBAN = re.compile(r"(?:(?<=IBAN)|(?<![A-Za-z0-9]))([A-Z]{2})[0-9]{2}(?: ?[A-Z0-9]){11,30}")


def iban_valid(compact: str) -> bool:
    """Length for its country and the ISO 7064 mod-97 check (the remainder is 1)."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


#: What every ``_IBAN`` match contains: tried first, a third of the cost of ``_IBAN``'s scan.
_IBAN_CUE = re.compile(r"[A-Z]{2}[0-9]{2}")


def _iban_spans(folded: str) -> list[tuple[int, int, str]]:
    spans: list[tuple[int, int, str]] = []
    if not _IBAN_CUE.search(folded):
        return spans
    for match in _IBAN.finditer(folded):
        length = IBAN_LENGTHS.get(match.group(1))
        if length is None:
            continue
        at, count = match.start(), 0  # the first ``length`` characters (what follows is text)
        for at in range(match.start(), match.end()):
            if folded[at] != " ":
                count += 1
                if count == length:
                    break
        if count == length and iban_valid(folded[match.start() : at + 1].replace(" ", "")):
            spans.append((match.start(), at + 1, "[iban]"))
    return spans


#: Chinese resident identity number: region, birth date, sequence, check character.
_CN_ID = re.compile(
    r"(?<![0-9])[1-8][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
    r"[0-9]{3}[0-9Xx](?![0-9])"
)
_CN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
#: US social security number, dashed or spaced: not area 000, 666 or 900-999, not group 00,
#: not serial 0000. Bare 9 digits only after ``SSN`` or ``social security``.
_SSN = re.compile(
    r"(?<![0-9A-Za-z-])(?!000|666|9)[0-9]{3}([- ])(?!00)[0-9]{2}\1(?!0000)[0-9]{4}"
    r"(?![0-9A-Za-z]|-[0-9])"
)
_SSN_BARE = re.compile(
    r"(?i)(?<![A-Za-z])(?:ssn|social security(?: number| no\.?)?|social)(?: is)?[ :#.]{0,3}"
    r"((?!000|666|9)[0-9]{3}(?!00)[0-9]{2}(?!0000)[0-9]{4})(?![0-9])"
)
#: UK National Insurance number: two letters (not D, F, I, Q, U, V; no O second; not BG, GB,
#: KN, NK, NT, TN, ZZ), six digits (maybe in pairs), A-D.
_UK_NINO = re.compile(
    r"(?<![A-Za-z0-9])(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D](?![A-Za-z0-9])"
)


def cn_id_valid(value: str) -> bool:
    total = sum(int(d) * w for d, w in zip(value[:17], _CN_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == value[17].upper()


#: What a match of ``_CN_ID`` (17 digits), ``_SSN`` (3-2-4 digits), or ``_UK_NINO`` (6 digits,
#: maybe spaced, then A-D) contains, and the words ``_SSN_BARE`` needs: tried first, they
#: cost a third of the four scans, which most texts with a digit do not need.
_NATIONAL_ID_DIGITS = re.compile(
    r"[0-9](?:[0-9]{16}|[0-9]{2}[- ][0-9]{2}[- ][0-9]{4}|[0-9] ?[0-9]{2} ?[0-9]{2} ?[A-D])"
)
_SSN_WORDS = re.compile(r"(?i)ssn|social")


def _national_id_spans(folded: str) -> list[tuple[int, int, str]]:
    if not _NATIONAL_ID_DIGITS.search(folded) and not _SSN_WORDS.search(folded):
        return []
    spans = [
        (m.start(), m.end(), "[id]") for m in _CN_ID.finditer(folded) if cn_id_valid(m.group())
    ]
    spans += [(m.start(), m.end(), "[id]") for m in _SSN.finditer(folded)]
    spans += [(m.start(1), m.end(1), "[id]") for m in _SSN_BARE.finditer(folded)]
    spans += [(m.start(), m.end(), "[id]") for m in _UK_NINO.finditer(folded)]
    return spans


#: Longest domain the pattern can match: 8 labels and their dots, then ``xn--`` + 59.
_MAX_DOMAIN = 8 * 64 + 63


#: The local part that ends right before an ``@`` (searched with ``endpos`` at the ``@``).
_LOCAL_BEFORE_AT = re.compile(rf"(?<!{_LOCAL}){_LOCAL}{{1,64}}\Z")


def _email_spans(folded: str) -> list[tuple[int, int, str]]:
    """``EMAIL`` tried once per ``@``, from the start of the local part before it (at most
    64 characters back) and at most ``_MAX_DOMAIN`` after: linear, and 4x faster on a
    200-character text than ``finditer`` (65 kB of ``a@a@...``: 0.1 s instead of 4 s)."""
    spans: list[tuple[int, int, str]] = []
    at = folded.find("@")
    while at >= 0:
        local = _LOCAL_BEFORE_AT.search(folded, max(0, at - 65), at)
        match = local and EMAIL.match(folded, local.start(), at + 2 + _MAX_DOMAIN)
        if match:
            spans.append((match.start(), match.end(), "[email]"))
            at = folded.find("@", match.end())
        else:
            at = folded.find("@", at + 1)
    return spans


def _union(spans: list[tuple[int, int, str]]) -> tuple[list[int], list[int]]:
    """Starts and ends of the union of ``spans``, in order (for bisecting)."""
    starts: list[int] = []
    ends: list[int] = []
    for start, end, _ in sorted(spans):
        if ends and start <= ends[-1]:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


#: What every PII class contains somewhere (after ``fold``): a digit of any script, or an "@".
_CUE = re.compile(r"[\d@]")

_PRIORITY = {"[email]": 0, "[iban]": 1, "[id]": 2, "[card]": 3, "[phone]": 4, "[digits]": 5}


def find_pii(text: str, *, regions: Iterable[str] = PHONE_REGIONS) -> list[tuple[int, int, str]]:
    """Non-overlapping ``(start, end, placeholder)`` spans of PII in ``text``, in order.
    Overlapping finds are merged (never dropped: what either covers is masked), named by the
    strongest: e-mail, card, phone, then ``[digits]`` (past the phone budget)."""
    folded = fold(text)
    if not _CUE.search(folded):  # every class needs a digit or an "@": most texts end here
        return []
    found = _email_spans(folded) + _iban_spans(folded) + _national_id_spans(folded)
    named_starts, named_ends = _union(found)  # runs inside these need no further look
    regions = tuple(regions)
    budget = [PHONE_BUDGET]
    last_phone_end = -_CUE_SPAN - 1
    for match in DIGIT_RUN.finditer(folded):
        start, end = match.span()
        inside = bisect.bisect_right(named_starts, start) - 1
        if inside >= 0 and end <= named_ends[inside]:
            continue
        cards = [] if folded[start] == "+" else _card_spans(folded[start:end], start)
        found += [(s, e, "[card]") for s, e in cards]
        run = match.group()
        if sum(c.isdigit() for c in run) < MIN_NATIONAL_DIGITS and "+" not in run:
            continue  # too short for a national number, and not international
        if _DATE_RUN.fullmatch(run.lstrip("(")) or cards == [(start, end)]:
            continue
        phones = _phone_spans(
            folded, start, end, regions, budget, cued=start - last_phone_end <= _CUE_SPAN
        )
        if phones:
            last_phone_end = max(e for _, e, name in phones)
        found += phones
    spans: list[tuple[int, int, str]] = []
    for start, end, name in sorted(found):
        if spans and start < spans[-1][1]:
            last_start, last_end, last_name = spans[-1]
            strongest = min(name, last_name, key=_PRIORITY.__getitem__)
            spans[-1] = (last_start, max(end, last_end), strongest)
        else:
            spans.append((start, end, name))
    return spans


def mask_pii(text: str, *, regions: Iterable[str] = PHONE_REGIONS) -> str:
    """The text with cards, e-mails and phone numbers replaced by placeholders (and, in a text
    with more digit runs than :data:`PHONE_BUDGET` allows to check, the rest by ``[digits]``)."""
    spans = find_pii(text, regions=regions)
    if not spans:
        return text
    parts: list[str] = []
    last = 0
    for start, end, placeholder in spans:
        parts += [text[last:start], placeholder]
        last = end
    parts.append(text[last:])
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# Raw bytes (dead letters).

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
#: JSON ``\\uXXXX`` escapes: ``"\\u0034\\u0031..."`` is a card number once decoded.
_JSON_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})")
#: A run of digits and separators at the very end of a truncated value.
_CUT_NUMBER = re.compile(r"[+(]?[0-9](?:[ ().\-/~]{0,3}[0-9])*[ ().\-/~]{0,3}\Z")
#: Characters that end the last token of a truncated value (see ``_mask_decoded``).
_TAIL_STOP = frozenset(" \t\r\n\"'<>,;:{}[]")

#: Aggressive masks for bytes that decode to no text: every run of 7+ digits and every token
#: around an ``@`` (bounded on both sides, so linear), in the ASCII view and in the UTF-16 and
#: UTF-32 views (digits and ``@`` also in full-width form there).
_TOKEN = r"[^\s\x00-\x1f\"'<>@\\()\[\]{},;]"
_AGGR_TEXT = re.compile(
    rf"[0-9](?:[ ().\-/]{{0,3}}[0-9]){{6,}}|{_TOKEN}{{0,64}}@{_TOKEN}{{1,255}}|{_TOKEN}{{1,64}}@"
)
_TOKEN_BYTES = rb"[!#-&*+\-./0-9:=?A-Z^_`a-z|~]"  # the ASCII part of _TOKEN


def _wide_pattern(encoding: str) -> re.Pattern[bytes]:
    """``_AGGR_TEXT`` for the bytes of a UTF-16/32 view: each character one code unit."""

    def unit(ascii_class: bytes, full_width: bytes = b"") -> bytes:
        # the code unit of an ASCII character: its byte and NULs, in the encoding's order
        units = [(ascii_class, b"\x00")]
        if full_width:  # U+FF10..: the low byte given, then 0xFF
            units.append((full_width, b"\xff"))
        alternatives = []
        for low, high in units:
            width = 2 if "16" in encoding else 4
            rest = [high] + [b"\x00"] * (width - 2)
            parts = [low, *rest] if encoding.endswith("le") else [*reversed(rest), low]
            alternatives.append(b"".join(parts))
        return rb"(?:" + rb"|".join(alternatives) + rb")"

    digit = unit(rb"[0-9]", rb"[\x10-\x19]")
    sep = unit(rb"[ ().\-/]")
    at = unit(rb"@", rb"\x20")
    token = unit(_TOKEN_BYTES)
    return re.compile(
        rb"%s(?:%s{0,3}%s){6,}|%s{0,64}%s%s{1,255}|%s{1,64}%s"
        % (digit, sep, digit, token, at, token, token, at)
    )


_WIDE_VIEWS = tuple(
    (encoding, _wide_pattern(encoding))
    for encoding in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
)


# --------------------------------------------------------------------------------------------
# Ids: one token of ``[A-Za-z0-9._:@-]``, not a sentence.

#: Digits joined by single ``-``/``.`` separators in groups of 2-6, the way phone and card
#: numbers are written (``138-1234-5678``, ``4111-1111-1111-1111``); ``rev-4-000000123``
#: (a 1-digit and a 9-digit group) is a sequence number, judged group by group.
_GROUPED_DIGITS = re.compile(r"(?<![0-9])[0-9]{2,6}(?:[-.][0-9]{2,6}){1,5}(?![0-9])")
_DIGITS = re.compile(r"[0-9]{7,}")


#: Random hex in an id (a UUID, a hash, an object id): no personal data, and its digit runs
#: are no numbers (a UUID's ``12345678-...`` group).
_HEX_TOKEN = re.compile(
    r"(?i)(?<![0-9a-z])(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|(?=[0-9]*[a-f])[0-9a-f]{16,})(?![0-9a-z])"
)


def _number_in_id(digits: str) -> str | None:
    """What a run of digits in an id is: ``[card]``, ``[phone]`` or None. National numbers
    as in text (``_national_phone``): 10 or 11 digits, or 8 and more after a trunk ``0``; an
    8-digit date or sequence number is not one. Any 11-15 digits that are a valid number
    behind a ``+`` are (an id is no sentence a word could explain them in)."""
    n = len(digits)
    if 13 <= n <= 19 and _card_prefix(digits) and luhn_valid(digits):
        return "[card]"
    if n > 15 or digits.startswith("000"):  # no phone number is longer, none starts so
        return None
    if n >= 11 and international_without_plus(digits):
        return "[phone]"
    if n not in (10, 11) and not (digits.startswith("0") and n >= MIN_NATIONAL_DIGITS):
        return None
    for region in PHONE_REGIONS:
        try:
            if phonenumbers.is_valid_number(phonenumbers.parse(digits, region)):
                return "[phone]"
        except phonenumbers.NumberParseException:
            continue
    return None


@functools.lru_cache(maxsize=65536)
def pii_in_id(value: str) -> str | None:
    """The placeholder of PII in an id (``[email]``, ``[iban]``, ``[id]``, ``[card]``,
    ``[phone]``), or None. Stricter than in text, where a digit run needs a phone word or a
    phone's shape around it: in an id a run that is a valid number of any country behind a
    ``+`` (``8613791733639``) is a phone number, and so is a grouped one (``0791-112-3456``),
    whatever letters precede it, unless a word names an identifier (``order-7712345680``).
    UUIDs and long hex tokens are skipped. Cached: product, merchant and conversation ids
    repeat; a zero-padded sequence number (``rev-4-000000123``) costs no ``phonenumbers``
    call. ``bench/id_policy.py`` measures how often ordinary ids are judged PII."""
    folded = fold(value)
    found = _email_spans(folded) + _iban_spans(folded) + _national_id_spans(folded)
    if found:
        return min(found)[2]
    folded = _HEX_TOKEN.sub(lambda m: " " * len(m.group()), folded)
    for match in _GROUPED_DIGITS.finditer(folded):
        kind = _number_in_id(re.sub(r"[-.]", "", match.group()))
        if kind is not None:
            return kind
    for match in _DIGITS.finditer(folded):
        # ``order-7712345680``, ``sku_...``: a word that names an identifier says what the
        # number is (not a bare letter prefix: ``m-13812345678`` is a member's phone number)
        before = folded[max(0, match.start() - 24) : match.start()].rstrip("-_.:#")
        if _ID_WORD_BEFORE.search(before):
            continue
        kind = _number_in_id(match.group())
        if kind is not None:
            return kind
    return None


#: A quoted value in a dead letter's detail (``rating: 'five' is not ...``).
QUOTED = re.compile(r"'(?:[^'\\\n]|\\.){0,4000}'|\"(?:[^\"\\\n]|\\.){0,4000}\"")


def _mask_aggressively(text: str) -> str:
    return _AGGR_TEXT.sub(lambda m: "[email]" if "@" in m.group() else "[digits]", text)


def mask_detail(detail: str) -> str:
    """A dead letter's detail, masked: the values it quotes come from the input, so besides
    what :func:`mask_pii` finds, every 7+ digit run and ``@`` token in them is masked (a bare
    ``8613791733639`` is an international number without its ``+``); the words and counts
    around them (``3600000 s ahead``, ``10485760 bytes``) are the worker's and stay."""
    return QUOTED.sub(lambda m: _mask_aggressively(m.group()), mask_pii(detail))


def mask_id_bytes(raw: bytes) -> bytes:
    """A record key (a member id, as producers key by it) for a masked dead letter: masked
    like text, then aggressively (every 7+ digit run, every ``@`` token, also in the UTF-16
    and UTF-32 views), since an id is no text whose digits a reader needs."""
    masked = mask_pii_bytes(raw) or raw
    return _mask_wide_views(_mask_ascii_view(masked, aggressive=True))


def _unescape_json(text: str) -> str:
    def char(match: re.Match[str]) -> str:
        code = int(match.group(1), 16)
        if code < 0x20 or code in (0x22, 0x5C) or 0xD800 <= code <= 0xDFFF:
            return match.group()
        return chr(code)

    return _JSON_ESCAPE.sub(char, text)


#: A whole run of 11-15 digits: an international number written without its ``+``?
_LONG_DIGITS = re.compile(r"(?<![0-9])[0-9]{11,15}(?![0-9])")


def international_without_plus(text: str) -> list[tuple[int, int, str]]:
    """Spans of whole 11-15 digit runs that are valid numbers once a ``+`` is put before them
    (``8613791733639``, ``447911123456``). Not used in text, where such runs are as often
    account numbers or timestamps, but in ids (``stream.core.policy.carries_pii``) and dead
    letters' originals, which no reader needs the digits of: there they fail closed."""
    spans = []
    for match in _LONG_DIGITS.finditer(fold(text)):
        try:
            number = phonenumbers.parse("+" + match.group())
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            spans.append((match.start(), match.end(), "[phone]"))
    return spans


def _mask_long_numbers(text: str) -> str:
    for start, end, placeholder in reversed(international_without_plus(text)):
        text = text[:start] + placeholder + text[end:]
    return text


def _mask_decoded(text: str, *, truncated: bool) -> str:
    masked = _mask_long_numbers(mask_pii(text))
    if "\\u" in text:
        unescaped = _unescape_json(text)
        if unescaped != text and mask_pii(unescaped) != unescaped:
            masked = _mask_long_numbers(mask_pii(unescaped))
    if truncated:  # what was being written when the value was cut: a number, an address
        tail_at = max(0, len(masked) - 400)
        tail = fold(masked[tail_at:])
        number = _CUT_NUMBER.search(tail)
        cut = number.start() if number else len(tail)
        while cut > 0 and tail[cut - 1] not in _TAIL_STOP:
            cut -= 1
        if re.search(r"[0-9@]", tail[cut:]):
            masked = masked[: tail_at + cut] + "[truncated]"
    return masked


def _decode(raw: bytes, encoding: str, *, truncated: bool) -> str | None:
    """Strict decoding; a truncated value may end in the first bytes of a character (left
    out of a re-encoded value: half a character says nothing)."""
    try:
        return codecs.getincrementaldecoder(encoding)("strict").decode(raw, final=not truncated)
    except UnicodeDecodeError:
        return None


def _nul_heavy_encodings(raw: bytes) -> list[str]:
    """UTF-32/16 candidates for bytes without BOM, judged by where their NUL bytes are
    (ASCII in UTF-16 LE has a NUL in every odd byte; real UTF-8 JSON has none)."""
    if len(raw) < 4:
        return []
    even, odd = raw[0::2].count(0), raw[1::2].count(0)
    candidates = []
    if len(raw) % 4 == 0 and even + odd >= len(raw) // 2:
        candidates += ["utf-32-le", "utf-32-be"]
    if odd >= len(raw) // 8 and odd > 2 * even:
        candidates.append("utf-16-le")
    if even >= len(raw) // 8 and even > 2 * odd:
        candidates.append("utf-16-be")
    return candidates


def _placeholder(encoding: str) -> Callable[[re.Match[bytes]], bytes]:
    email, digits = "[email]".encode(encoding), "[digits]".encode(encoding)
    ats = ("@".encode(encoding), "\uff20".encode(encoding))
    return lambda match: email if any(at in match.group() for at in ats) else digits


def _mask_wide_views(raw: bytes) -> bytes:
    for encoding, pattern in _WIDE_VIEWS:
        raw = pattern.sub(_placeholder(encoding), raw)
    return raw


def _mask_ascii_view(raw: bytes, *, aggressive: bool) -> bytes:
    """Masks what shows as ASCII/UTF-8 in bytes that are not (all) UTF-8: the invalid bytes
    are kept as they are (surrogateescape), the rest masked as text, then (``aggressive``)
    every 7+ digit run and ``@`` token."""
    text = raw.decode("utf-8", "surrogateescape")
    masked = mask_pii(text)
    if aggressive:
        masked = _mask_aggressively(masked)
    return raw if masked == text else masked.encode("utf-8", "surrogateescape")


def mask_pii_bytes(
    raw: bytes,
    *,
    undecodable: Literal["mask_digits", "drop"] = "mask_digits",
    truncated: bool = False,
) -> bytes | None:
    """The bytes with PII masked in their own encoding, re-encoded in it.

    Tried in turn: a BOM (UTF-8/16/32), UTF-32/16 when NUL bytes say so, then UTF-8; the text
    is masked like an event's (JSON ``\\u`` escapes included) and encoded back, so bytes
    without PII come back unchanged. A UTF-16/32 decoding is also checked in the ASCII view
    (a UTF-8 record that merely starts with ``FF FE`` decodes as UTF-16 garbage). Bytes none
    of these decode are masked aggressively in the ASCII, UTF-16 and UTF-32 views
    (``undecodable="mask_digits"``), or give None (``"drop"``: keep nothing rather than what
    masking cannot vouch for). ``truncated``: the bytes are a prefix of the record, so a last
    character may be cut, and a number or address cut in half at the end is masked as
    ``[truncated]``."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            text = _decode(raw[len(bom) :], encoding, truncated=truncated)
            if text is not None:
                masked = _mask_decoded(text, truncated=truncated)
                out = raw if masked == text else bom + masked.encode(encoding)
                return out if encoding == "utf-8" else _mask_ascii_view(out, aggressive=False)
            break
    for encoding in _nul_heavy_encodings(raw):
        text = _decode(raw, encoding, truncated=truncated)
        if text is not None and "\x00" not in text:
            masked = _mask_decoded(text, truncated=truncated)
            out = raw if masked == text else masked.encode(encoding)
            return _mask_ascii_view(out, aggressive=False)
    text = _decode(raw, "utf-8", truncated=truncated)
    if text is not None:
        masked = _mask_decoded(text, truncated=truncated)
        out = raw if masked == text else masked.encode("utf-8")
        # Valid JSON has no NUL byte: a UTF-16/32 fragment in UTF-8 is masked in its view.
        return _mask_wide_views(out) if b"\x00" in out else out
    if undecodable == "drop":
        return None
    return _mask_wide_views(_mask_ascii_view(raw, aggressive=True))
