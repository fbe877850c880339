"""Synthetic merchants: one generative process for the demo (`seed_demo`) and the benchmarks
(`generate_dataset`).

The process is deterministic for a seed: everything is drawn from one `random.Random(seed)`,
in a fixed order, so the same seed and parameters give the same rows whatever the output
(database or CSV) and however the rows are grouped into chunks.

Customers buy following a BG/NBD-like process (Fader, Hardie & Lee, 2005):

- A share of customers sign up and never order.
- The others make their first purchase when they join. While "alive", a customer buys at a
  personal rate lambda ~ Gamma(shape r, rate alpha) purchases per day (exponential gaps), and
  after each purchase drops out for good with a personal probability p ~ Beta(a, b).
- Purchases are snapped into the store's opening hours in the merchant's time zone, and never
  lie before `joined_at` nor after `now`.

Rows are produced in chunks of customers (`SyntheticDataset.iter_chunks()`), so millions of
customers never sit in memory at once. Rows are plain tuples of small values (indices into
the catalogue, epoch seconds, cents) that the writers in `customers.synthetic_writers` format
for their output; see the `*_FIELDS` constants for the tuple layouts.
"""

from __future__ import annotations

import random
import zoneinfo
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

DAY = 86_400

# Tuple layouts of the rows a `Chunk` holds. Indices are 0-based positions in the dataset
# (customers, transactions, redemptions) or in the catalogue (branches, products, tags,
# tiers, rewards); -1 means "none". Times are integer epoch seconds (UTC), money is cents.
CUSTOMER_FIELDS = (
    "index",
    "first_name",
    "last_name",
    "email",
    "phone",
    "gender",
    "birth_date",  # ISO date string or None
    "customer_type",
    "tier",  # tier index or -1
    "joined_at",
    "home_branch",  # branch index or -1
    "email_opt_in",
    "sms_opt_in",
    "push_opt_in",
    "points_balance",
    "lifetime_points",
    "last_contacted_at",  # epoch seconds or -1
)
TRANSACTION_FIELDS = (
    "index",
    "customer",
    "occurred_at",
    "is_refund",
    "total_cents",
    "branch",  # branch index or -1
    "points_earned",
    "points_redeemed",
)
ITEM_FIELDS = ("transaction", "product", "quantity", "amount_cents")
REDEMPTION_FIELDS = ("index", "customer", "reward", "points", "redeemed_at")
CUSTOMER_TAG_FIELDS = ("customer", "tag")

CustomerRow = tuple[
    int, str, str, str, str, str, str | None, str, int, int, int, bool, bool, bool, int, int, int
]
TransactionRow = tuple[int, int, int, bool, int, int, int, int]
ItemRow = tuple[int, int, int, int]
RedemptionRow = tuple[int, int, int, int, int]
CustomerTagRow = tuple[int, int]


def customer_external_id(index: int) -> str:
    return f"C{index + 1:07d}"


def transaction_external_id(index: int) -> str:
    return f"T{index + 1:09d}"


def redemption_external_id(index: int) -> str:
    return f"R{index + 1:08d}"


# --- The catalogue: branches, products, tags, tiers, rewards -----------------------------


@dataclass(frozen=True)
class BranchSpec:
    code: str
    name: str
    weight: float  # share of customers who call it home


@dataclass(frozen=True)
class ProductSpec:
    sku: str
    name: str
    product_type: str
    brand: str
    category: str
    price_cents: int


@dataclass(frozen=True)
class TierSpec:
    name: str
    rank: int
    min_lifetime_points: int


@dataclass(frozen=True)
class RewardSpec:
    name: str
    points: int


@dataclass(frozen=True)
class Catalogue:
    branches: tuple[BranchSpec, ...]
    products: tuple[ProductSpec, ...]
    tags: tuple[str, ...]
    tiers: tuple[TierSpec, ...]  # ascending min_lifetime_points
    rewards: tuple[RewardSpec, ...]  # ascending points
    customer_types: tuple[tuple[str, float], ...]  # (name, share)


@dataclass(frozen=True)
class _ProductLine:
    """How to make one product type of a profile: how many, names, prices, basket quantities."""

    product_type: str
    category: str
    count: int
    brands: tuple[str, ...]
    formats: tuple[tuple[str, int], ...]  # (format label, price in cents)
    quantities: tuple[int, ...]  # drawn uniformly: the basket quantity of one line


_STRAINS = (
    "Blue Dream",
    "Pink Kush",
    "Gelato",
    "Wedding Cake",
    "Jack Herer",
    "Sour Diesel",
    "GMO Cookies",
    "Ice Cream Cake",
    "Durban Poison",
    "Northern Lights",
    "Tangerine Dream",
    "Lemon Haze",
    "MAC 1",
    "Black Cherry Punch",
    "Death Bubba",
    "Ghost Train Haze",
)
_CANNABIS_BRANDS = (
    "Phat Panda",
    "Boreal Bud Co.",
    "Lakeshore Growers",
    "Maple Ridge",
    "Tundra Labs",
    "Prairie Gold",
    "Cedar & Smoke",
    "Muskoka Mist",
    "Granite Grove",
    "Ember & Oak",
    "Dewdrop",
    "Laurentian",
    "Good Vibes Co.",
)

PROFILES: dict[str, tuple[_ProductLine, ...]] = {
    # A cannabis dispensary, the shape the segment rules were written for.
    "dispensary": (
        _ProductLine(
            "flower",
            "Flower",
            70,
            _CANNABIS_BRANDS,
            (("3.5 g", 3499), ("7 g", 5999), ("14 g", 9999), ("28 g", 17999)),
            (1, 1, 1, 1, 1, 1, 2, 2, 3),
        ),
        _ProductLine(
            "preroll",
            "Pre-Rolls",
            60,
            _CANNABIS_BRANDS,
            (("1 x 1 g", 999), ("3 x 0.5 g", 1699), ("10 x 0.35 g", 3499), ("2 x 1 g", 1899)),
            (1, 1, 1, 1, 2, 2, 2, 3, 4, 5),
        ),
        _ProductLine(
            "vape",
            "Vapes",
            40,
            _CANNABIS_BRANDS,
            (
                ("510 cartridge 1 g", 4999),
                ("All-in-one 0.5 g", 3299),
                ("510 cartridge 0.5 g", 2999),
            ),
            (1, 1, 1, 1, 2),
        ),
        _ProductLine(
            "edible",
            "Edibles",
            45,
            ("Phat Panda", "Wildberry Kitchen", "Sweet Leaf Bakery", "Good Vibes Co.", "Dewdrop"),
            (("Gummies 5-pack", 699), ("Chocolate bar", 899), ("Soft chews 2-pack", 549)),
            (1, 1, 1, 2, 2, 3),
        ),
        _ProductLine(
            "beverage",
            "Edibles",
            25,
            ("Fizzy Leaf", "Lakeshore Growers", "Northern Sips"),
            (("Sparkling 355 ml", 599), ("Iced tea 355 ml", 649), ("Shot 100 ml", 899)),
            (1, 1, 2, 2, 4, 6),
        ),
        _ProductLine(
            "concentrate",
            "Extracts",
            25,
            ("Phat Panda", "Tundra Labs", "Granite Grove", "Ember & Oak"),
            (("Live resin 1 g", 5499), ("Shatter 1 g", 3999), ("Hash 2 g", 3299)),
            (1, 1, 1, 2),
        ),
        _ProductLine(
            "topical",
            "Wellness",
            15,
            ("Calm Botanicals", "Dewdrop"),
            (("CBD balm 50 ml", 3499), ("Bath bomb", 1499), ("Massage oil 100 ml", 4499)),
            (1,),
        ),
        _ProductLine(
            "accessory",
            "Accessories",
            30,
            ("Rolling Co.", "Glassworks", "Stash Gear"),
            (("Papers", 299), ("Grinder", 2499), ("Lighter", 399), ("Pipe", 3999), ("Tray", 1999)),
            (1, 1, 1, 1, 2, 3),
        ),
    ),
    # A café and corner shop, for a second merchant that is not a dispensary.
    "cafe": (
        _ProductLine(
            "coffee",
            "Hot drinks",
            40,
            ("House", "Northside Roasters"),
            (("Espresso", 250), ("Flat white", 350), ("Latte", 380), ("Filter", 280)),
            (1, 1, 1, 1, 2, 2, 3),
        ),
        _ProductLine(
            "tea",
            "Hot drinks",
            20,
            ("House", "Leaf & Kettle"),
            (("Breakfast tea", 250), ("Green tea", 270), ("Chai latte", 360)),
            (1, 1, 1, 2),
        ),
        _ProductLine(
            "pastry",
            "Bakery",
            40,
            ("House", "Crumb & Co."),
            (("Croissant", 260), ("Cinnamon bun", 320), ("Muffin", 290), ("Scone", 280)),
            (1, 1, 1, 2, 2, 4),
        ),
        _ProductLine(
            "sandwich",
            "Kitchen",
            30,
            ("House",),
            (("Toastie", 650), ("Baguette", 595), ("Wrap", 575)),
            (1, 1, 1, 2),
        ),
        _ProductLine(
            "beans",
            "Retail",
            25,
            ("Northside Roasters", "Hill Top"),
            (("250 g bag", 1050), ("1 kg bag", 3400)),
            (1, 1, 2),
        ),
        _ProductLine(
            "merchandise",
            "Retail",
            15,
            ("Northside",),
            (("Keep cup", 1500), ("Tote bag", 1200), ("Mug", 1400)),
            (1,),
        ),
    ),
}
_CAFE_ITEMS = (
    "Single Origin",
    "Oat",
    "Almond",
    "Seasonal",
    "Classic",
    "Vegan",
    "Ham & Cheese",
    "Smoked Salmon",
    "Blueberry",
    "Chocolate",
    "Decaf",
    "Caramel",
)

_REWARDS = {
    "dispensary": (
        ("$5 off", 250),
        ("Free pre-roll", 400),
        ("$10 off", 500),
        ("Free gummies", 600),
        ("$25 off", 1200),
        ("Branded hoodie", 2000),
    ),
    "cafe": (
        ("Free pastry", 150),
        ("Free coffee", 200),
        ("Free lunch", 600),
        ("Keep cup", 900),
    ),
}
_TAGS = (
    "vip",
    "staff",
    "local",
    "tourist",
    "newsletter",
    "wholesale",
    "student",
    "senior",
    "birthday-club",
    "referral",
)
_TIERS = (("Bronze", 1, 0), ("Silver", 2, 500), ("Gold", 3, 2000), ("Platinum", 4, 6000))
_CUSTOMER_TYPES = (("regular", 0.86), ("medical", 0.09), ("employee", 0.03), ("vendor", 0.02))
_BRANCHES = (
    ("DT", "Downtown", 0.5),
    ("WE", "West End", 0.3),
    ("AP", "Airport", 0.2),
    ("UP", "Uptown", 0.15),
    ("HB", "Harbourfront", 0.1),
)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_FEMALE = _words(
    "Olivia Emma Charlotte Amelia Sophia Isabella Ava Mia Evelyn Harper Luna Camila Sofia "
    "Scarlett Elizabeth Eleanor Emily Chloe Mila Violet Penelope Gianna Aria Abigail Ella "
    "Avery Hazel Nora Layla Lily Aurora Nova Ellie Madison Grace Isla Willow Zoe Riley "
    "Stella Priya Mei Fatima Aisha Chantal Genevieve Maeve Siobhan Ingrid Leilani"
)
_MALE = _words(
    "Liam Noah Oliver James Elijah William Henry Lucas Benjamin Theodore Mateo Levi "
    "Sebastian Daniel Jack Michael Alexander Owen Asher Samuel Ethan Leo Jackson Mason "
    "Ezra John Hudson Luca Aiden Joseph David Jacob Logan Luke Julian Gabriel Grayson "
    "Wyatt Matthew Maverick Arjun Wei Omar Tariq Jean-Luc Mathieu Declan Lars Kai Rohan"
)
_NEUTRAL = _words("Alex Jordan Taylor Morgan Casey Riley Jamie Quinn Rowan Sam Charlie Robin")
_LAST = _words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson "
    "White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright "
    "Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell "
    "Mitchell Carter Roberts Tremblay Gagnon Roy Cote Bouchard Gauthier Morin Lavoie "
    "Fortin Gagne Ouellet Pelletier Belanger Levesque Bergeron Leblanc Paquette Girard "
    "Simard Boucher Caron Beaulieu Cloutier Dube Poirier Fournier Patel Singh Sharma Chen "
    "Wang Li Zhang Liu Kim Park Choi Tanaka Sato Suzuki Murphy Kelly Sullivan Walsh "
    "O'Brien Byrne Ryan O'Connor MacDonald Campbell Stewart Fraser Reid Murray Ahmed Ali "
    "Khan Hussain Cohen Levy Friedman Rossi Russo Ferrari Esposito Bianchi Silva Santos "
    "Oliveira Costa Novak Kowalski Nowak Muller Schmidt Schneider Fischer"
)
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")


def _weighted_table(rng: random.Random, weights: Sequence[float], size: int) -> tuple[int, ...]:
    """A lookup table of `size` indices drawn by `weights`: `table[int(random() * size)]` is a
    weighted draw costing one `random()` call (`random.choices` costs ten times more)."""
    return tuple(rng.choices(range(len(weights)), weights=weights, k=size))


def build_catalogue(
    rng: random.Random, *, profile: str = "dispensary", branch_count: int = 3
) -> Catalogue:
    """The merchant's branches, a few hundred products, tags, tiers, rewards."""
    if profile not in PROFILES:
        raise ValueError(f'unknown profile "{profile}"; choose one of {sorted(PROFILES)}')
    if not 1 <= branch_count <= len(_BRANCHES):
        raise ValueError(f"branch_count must be between 1 and {len(_BRANCHES)}")
    branches = tuple(BranchSpec(code, name, w) for code, name, w in _BRANCHES[:branch_count])
    products: list[ProductSpec] = []
    for line in PROFILES[profile]:
        prefix = line.product_type[:3].upper()
        for n in range(line.count):
            # "Phat Panda" comes up three times as often as any other brand of its lines, so
            # "bought Phat Panda prerolls" segments have members at any dataset size.
            brand = rng.choices(
                line.brands, weights=[3 if b == "Phat Panda" else 1 for b in line.brands]
            )[0]
            label, price = line.formats[rng.randrange(len(line.formats))]
            variety = rng.choice(_STRAINS if profile == "dispensary" else _CAFE_ITEMS)
            # Prices vary by a few percent around the format's list price, ending in 9.
            cents = max(99, int(price * rng.uniform(0.85, 1.2)) // 10 * 10 + 9)
            products.append(
                ProductSpec(
                    sku=f"{prefix}-{n + 1:04d}",
                    name=f"{brand} {variety} {label}",
                    product_type=line.product_type,
                    brand=brand,
                    category=line.category,
                    price_cents=cents,
                )
            )
    return Catalogue(
        branches=branches,
        products=tuple(products),
        tags=_TAGS,
        tiers=tuple(TierSpec(*t) for t in _TIERS),
        rewards=tuple(RewardSpec(*r) for r in _REWARDS[profile]),
        customer_types=_CUSTOMER_TYPES,
    )


# --- The process ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessParams:
    """Parameters of the generative process; the defaults give ~10 transactions and ~25
    line items per customer over three years (see docs/demo-data.md)."""

    years: int = 3
    no_order_share: float = 0.08  # sign up and never order
    rate_shape: float = 0.75  # r: purchase rate lambda ~ Gamma(r, rate alpha), per day
    rate_alpha: float = 11.0  # alpha: mean rate r / alpha = one purchase every ~15 days
    dropout_a: float = 0.9  # p ~ Beta(a, b): drop-out probability after each purchase
    dropout_b: float = 6.5  # mean p = a / (a + b) ~ 0.12
    refund_share: float = 0.03  # of transactions
    home_branch_share: float = 0.85  # of a customer's transactions, at the home branch
    favourite_share: float = 0.6  # of line items, from the customer's own favourite products
    redeem_probability: float = 0.2  # per purchase, when the balance affords a reward
    contacted_share: float = 0.7  # of opted-in customers, contacted in the last 120 days
    birth_date_share: float = 0.88


@dataclass
class Chunk:
    """The rows of a run of consecutive customers, with everything they bought."""

    customers: list[CustomerRow] = field(default_factory=list)
    customer_tags: list[CustomerTagRow] = field(default_factory=list)
    transactions: list[TransactionRow] = field(default_factory=list)
    items: list[ItemRow] = field(default_factory=list)
    redemptions: list[RedemptionRow] = field(default_factory=list)


# Basket sizes (line items per purchase), mean 2.5: a lookup table drawn uniformly.
_BASKET_SIZES = (1,) * 32 + (2,) * 27 + (3,) * 18 + (4,) * 11 + (5,) * 6 + (6,) * 3 + (7, 7, 8)
# Local opening hours 9:00-22:00 with the evening peak of a dispensary; weights per hour.
_HOUR_WEIGHTS = (3, 5, 6, 8, 8, 7, 8, 10, 12, 11, 9, 7, 4)
_OPENING_HOUR = 9


class SyntheticDataset:
    """A synthetic merchant: its catalogue and a stream of chunks of customers.

    `now` is the end of the three-year history (default: the current time); every time the
    dataset holds lies in `[now - years, now]`. Iterating twice gives the same rows.
    """

    def __init__(
        self,
        *,
        customers: int,
        seed: int = 1,
        now: datetime | None = None,
        time_zone: str = "UTC",
        profile: str = "dispensary",
        branch_count: int = 3,
        params: ProcessParams | None = None,
    ) -> None:
        if customers < 0:
            raise ValueError("customers must be >= 0")
        now = now or datetime.now(UTC)
        if now.tzinfo is None:
            raise ValueError("now must be an aware datetime")
        self.customers = customers
        self.seed = seed
        self.now_ts = int(now.timestamp())
        self.start_ts = self.now_ts - (params or ProcessParams()).years * 365 * DAY
        self.tz = zoneinfo.ZoneInfo(time_zone)
        self.profile = profile
        self.params = params or ProcessParams()
        # The catalogue comes first from the seed's stream; iter_chunks() replays the stream
        # from the start, so the catalogue and the customers never depend on each other's use.
        self.catalogue = build_catalogue(
            random.Random(seed),  # noqa: S311 (synthetic data, not security)
            profile=profile,
            branch_count=branch_count,
        )

    # Epoch-day bounds of the history, for the writers' timestamp caches.
    @property
    def first_day(self) -> int:
        return self.start_ts // DAY - 1

    @property
    def last_day(self) -> int:
        return self.now_ts // DAY + 1

    def _utc_offsets(self) -> list[int]:
        """UTC offset in seconds of the merchant's zone at noon of each local day."""
        offsets = []
        for day in range(self.first_day, self.last_day + 1):
            noon = datetime.fromtimestamp(day * DAY + DAY // 2, UTC)
            delta = noon.astimezone(self.tz).utcoffset() or timedelta(0)
            offsets.append(int(delta.total_seconds()))
        return offsets

    def iter_chunks(self, chunk_size: int = 5000) -> Iterator[Chunk]:
        """Yield the customers in chunks of `chunk_size`, each with all its rows.

        This is the hot loop at a million customers (~36M rows): names are bound to locals,
        weighted draws use precomputed tables, and each value costs a `random()` call or two.
        """
        p = self.params
        cat = self.catalogue
        rng = random.Random(self.seed)  # noqa: S311 (synthetic data, not security)
        build_catalogue(rng, profile=self.profile, branch_count=len(cat.branches))  # replay
        rnd = rng.random
        expo = rng.expovariate
        gamma = rng.gammavariate
        beta = rng.betavariate

        now = self.now_ts
        start = self.start_ts
        span = now - start
        first_day = self.first_day
        offsets = self._utc_offsets()
        std_offset = offsets[len(offsets) // 2]
        today = datetime.fromtimestamp(now, UTC).astimezone(self.tz).date()
        today_ordinal = today.toordinal()

        # Seconds after local midnight at which sales happen, weighted by hour.
        opening = tuple(
            (_OPENING_HOUR + h) * 3600 + rng.randrange(3600)
            for h in _weighted_table(rng, _HOUR_WEIGHTS, 4096)
        )
        n_open = len(opening)

        def at_local_time(ts: float) -> int:
            """The sale instant on the local day of `ts`, at a drawn opening-hours time."""
            day = int((ts + std_offset) // DAY)
            return day * DAY - offsets[day - first_day] + opening[int(rnd() * n_open)]

        products = cat.products
        prices = [prod.price_cents for prod in products]
        quantity_of_type = {line.product_type: line.quantities for line in PROFILES[self.profile]}
        quantities = [quantity_of_type[prod.product_type] for prod in products]
        # Popularity is Zipf-like over a shuffled catalogue, with Phat Panda prerolls boosted
        # (the contract's running example).
        order = list(range(len(products)))
        rng.shuffle(order)
        popularity = [0.0] * len(products)
        for rank, index in enumerate(order, start=1):
            boost = 3.0 if products[index].brand == "Phat Panda" else 1.0
            popularity[index] = boost / rank**0.9
        popular = _weighted_table(rng, popularity, 8192)
        n_popular = len(popular)

        branch_table = _weighted_table(rng, [b.weight for b in cat.branches], 1024)
        type_table = _weighted_table(rng, [share for _, share in cat.customer_types], 1024)
        type_names = [name for name, _ in cat.customer_types]
        tag_index = {name: i for i, name in enumerate(cat.tags)}
        tiers = [(i, t.min_lifetime_points) for i, t in enumerate(cat.tiers)][::-1]
        rewards = [r.points for r in cat.rewards]
        cheapest_reward = rewards[0]
        n_first_f, n_first_m, n_first_x = len(_FEMALE), len(_MALE), len(_NEUTRAL)
        n_last = len(_LAST)
        basket = _BASKET_SIZES
        n_basket = len(basket)

        refund_odds = p.refund_share / (1 - p.refund_share)
        no_order = p.no_order_share
        rate_shape, rate_scale = p.rate_shape, 1.0 / p.rate_alpha
        drop_a, drop_b = p.dropout_a, p.dropout_b
        home_share = p.home_branch_share
        favourite_share = p.favourite_share
        redeem_probability = p.redeem_probability

        j = 0  # next transaction index
        m = 0  # next redemption index
        chunk = Chunk()
        customers, customer_tags = chunk.customers, chunk.customer_tags
        transactions, items, redemptions = chunk.transactions, chunk.items, chunk.redemptions
        for i in range(self.customers):
            # -- profile
            u = rnd()
            if u < 0.47:
                gender, first = "female", _FEMALE[int(rnd() * n_first_f)]
            elif u < 0.93:
                gender, first = "male", _MALE[int(rnd() * n_first_m)]
            else:
                gender = "other" if u < 0.96 else "unspecified"
                first = _NEUTRAL[int(rnd() * n_first_x)]
            last = _LAST[int(rnd() * n_last)]
            email = (
                f"{first}.{last}{i + 1}@{_EMAIL_DOMAINS[i % 3]}".lower()
                .replace("'", "")
                .replace(" ", "")
            )
            phone = f"+1{(416, 647, 905, 437)[i % 4]}{2000000 + i % 8000000:07d}"
            birth_date = None
            if rnd() < p.birth_date_share:
                # Adults only (19+ in Ontario); ages skew to 25-45.
                age_days = int((19 + min(gamma(2.0, 8.0), 70) + rnd()) * 365.2425)
                birth_date = date.fromordinal(today_ordinal - age_days).isoformat()
            customer_type = type_names[type_table[int(rnd() * 1024)]]
            home = branch_table[int(rnd() * 1024)] if rnd() < 0.95 else -1
            joined = min(at_local_time(start + rnd() * span), now)
            joined = max(joined, start)
            email_opt = rnd() < 0.6
            sms_opt = rnd() < 0.4
            push_opt = rnd() < 0.25

            # -- purchases: BG/NBD-like
            lifetime = balance = 0
            if rnd() >= no_order:
                lam = max(gamma(rate_shape, rate_scale), 1e-6)
                dropout = beta(drop_a, drop_b)
                n_fav = 3 + int(rnd() * 6)
                favourites = [popular[int(rnd() * n_popular)] for _ in range(n_fav)]
                t = float(joined)
                # The first order is the sign-up visit.
                occurred = min(joined + 60 + int(rnd() * 1500), now)
                while True:
                    if home >= 0 and rnd() < home_share:
                        branch = home
                    else:
                        branch = branch_table[int(rnd() * 1024)]
                    total = 0
                    first_item = len(items)
                    for _ in range(basket[int(rnd() * n_basket)]):
                        if rnd() < favourite_share:
                            product = favourites[int(rnd() * n_fav)]
                        else:
                            product = popular[int(rnd() * n_popular)]
                        qty_table = quantities[product]
                        qty = qty_table[int(rnd() * len(qty_table))]
                        amount = prices[product] * qty
                        total += amount
                        items.append((j, product, qty, amount))
                    earned = total // 100
                    redeemed = 0
                    if balance >= cheapest_reward and rnd() < redeem_probability:
                        affordable = 0
                        while affordable + 1 < len(rewards) and rewards[affordable + 1] <= balance:
                            affordable += 1
                        reward = int(rnd() * (affordable + 1))
                        redeemed = rewards[reward]
                        balance -= redeemed
                        redemptions.append((m, i, reward, redeemed, occurred))
                        m += 1
                    lifetime += earned
                    balance += earned
                    transactions.append((j, i, occurred, False, total, branch, earned, redeemed))
                    j += 1
                    if rnd() < refund_odds:
                        # Return of one line, a few days later (never after now).
                        line = items[first_item + int(rnd() * (len(items) - first_item))]
                        when = min(occurred + 3600 + int(expo(1 / 3.0) * DAY), now)
                        items.append((j, line[1], line[2], line[3]))
                        transactions.append((j, i, when, True, line[3], branch, 0, 0))
                        j += 1
                    if rnd() < dropout:
                        break  # dropped out for good
                    t += expo(lam) * DAY
                    if t > now:
                        break
                    previous = occurred
                    occurred = at_local_time(t)
                    if occurred <= previous:  # two visits on one local day, keep them in order
                        occurred = previous + 600 + int(rnd() * 3600)
                    if occurred > now:
                        break

            # -- loyalty state, known once the purchases are
            tier = -1
            if lifetime:
                for tier_index, threshold in tiers:
                    if lifetime >= threshold:
                        tier = tier_index
                        break
            contacted = -1
            if (email_opt or sms_opt or push_opt) and rnd() < p.contacted_share:
                since = max(joined, now - 120 * DAY)
                contacted = since + int(rnd() * (now - since))
            customers.append(
                (
                    i,
                    first,
                    last,
                    email,
                    phone,
                    gender,
                    birth_date,
                    customer_type,
                    tier,
                    joined,
                    home,
                    email_opt,
                    sms_opt,
                    push_opt,
                    balance,
                    lifetime,
                    contacted,
                )
            )
            # -- tags: a few per customer, some following from the profile
            if lifetime >= 4000 or rnd() < 0.01:
                customer_tags.append((i, tag_index["vip"]))
            if customer_type == "employee":
                customer_tags.append((i, tag_index["staff"]))
            if customer_type == "vendor":
                customer_tags.append((i, tag_index["wholesale"]))
            u = rnd()
            if u < 0.55:
                customer_tags.append((i, tag_index["local"]))
            elif u < 0.65:
                customer_tags.append((i, tag_index["tourist"]))
            if email_opt and rnd() < 0.7:
                customer_tags.append((i, tag_index["newsletter"]))
            u = rnd()
            if u < 0.08:
                customer_tags.append((i, tag_index["student"]))
            elif u < 0.14:
                customer_tags.append((i, tag_index["senior"]))
            if birth_date is not None and rnd() < 0.3:
                customer_tags.append((i, tag_index["birthday-club"]))
            if rnd() < 0.05:
                customer_tags.append((i, tag_index["referral"]))

            if len(customers) >= chunk_size:
                yield chunk
                chunk = Chunk()
                customers, customer_tags = chunk.customers, chunk.customer_tags
                transactions, items = chunk.transactions, chunk.items
                redemptions = chunk.redemptions
        if customers:
            yield chunk
