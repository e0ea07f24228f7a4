"""Build the shipped evaluation set, src/tokenomy/evalset/data/evalset.jsonl (deterministic: same file every run).

`python scripts/build_evalset.py` rewrites it. Four task types with machine-checkable answers:

- json_extraction: a realistic text (signature, order, invite, ...) and a JSON Schema; expected: the object.
- classification: hand-written texts, a fixed label set per task; expected: the label.
- arithmetic: word problems and expressions from a seeded generator; expected: the number.
- code: requests for a named Python function; checked by parsing and a name/arity check, never run;
  expected: a reference implementation.

Each row: id, task_type, messages (one user message), checker (kind and its parameters), expected.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

OUT_PATH = Path(__file__).resolve().parents[1] / "src" / "tokenomy" / "evalset" / "data" / "evalset.jsonl"
SEED = 20250701
VARIANTS_PER_TEMPLATE = 6

FIRST_NAMES = ["Maria", "James", "Aiko", "Olu", "Priya", "Lukas", "Sofia", "Mateo", "Chen", "Fatima", "Noah", "Ingrid"]
LAST_NAMES = ["Gonzalez", "Okafor", "Tanaka", "Schneider", "Patel", "Novak", "Rossi", "Andersson", "Haddad", "Byrne"]
COMPANIES = [
    "Northwind Logistics",
    "Bluefin Analytics",
    "Cedar & Stone LLP",
    "Helio Robotics",
    "Greenleaf Foods",
    "Quantel Systems",
    "Atlas Dental Group",
    "Brightwave Media",
]
CITIES = [
    ("Lisbon", "LIS"),
    ("Chicago", "ORD"),
    ("Tokyo", "HND"),
    ("Berlin", "BER"),
    ("Toronto", "YYZ"),
    ("Nairobi", "NBO"),
    ("Sydney", "SYD"),
    ("Madrid", "MAD"),
    ("Singapore", "SIN"),
    ("Boston", "BOS"),
]
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
TIME_PATTERN = r"^\d{2}:\d{2}$"
CURRENCIES = [("$", "USD"), ("€", "EUR"), ("£", "GBP")]


# --- helpers ---------------------------------------------------------------------------------------------


def user(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


def person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def people(rng: random.Random, n: int) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        name = person(rng)
        if name not in names:
            names.append(name)
    return names


def date_in_2025(rng: random.Random) -> dt.date:
    return dt.date(2025, 1, 1) + dt.timedelta(days=rng.randrange(365))


def long_date(day: dt.date) -> str:
    """'Thursday, 13 March 2025'."""
    return f"{day:%A}, {day.day} {day:%B %Y}"


def clock_12h(hour: int, minute: int) -> str:
    """'3:30 pm' from 24-hour parts."""
    suffix = "am" if hour < 12 else "pm"
    return f"{(hour - 1) % 12 + 1}:{minute:02d} {suffix}"


def money(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def round2(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def strict_object(properties: dict, required: list[str] | None = None) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": required if required is not None else list(properties),
        "additionalProperties": False,
    }


def json_prompt(schema: dict, text: str) -> str:
    return (
        "Extract the details from the text below as a JSON object that matches this JSON Schema. "
        "Reply with the JSON only.\n\n"
        f"Schema: {json.dumps(schema, ensure_ascii=False)}\n\nText:\n{text}"
    )


# --- JSON extraction: each template returns (text, expected); the schema is fixed per template -------------

CONTACT_SCHEMA = strict_object(
    {
        "name": {"type": "string"},
        "title": {"type": "string", "description": "job title"},
        "company": {"type": "string"},
        "email": {"type": "string", "format": "email"},
        "phone": {"type": "string", "description": "exactly as written"},
    }
)
TITLES = ["Head of Procurement", "Senior Data Engineer", "Partner", "Operations Manager", "VP Sales", "CTO"]
OPENERS = [
    "Thanks again for your time today, looking forward to the proposal.",
    "Please find the signed contract attached.",
    "Happy to jump on a call next week if that helps.",
    "Let me know if the revised quote works for you.",
]


def contact_row(rng: random.Random) -> tuple[str, dict]:
    name, company, title = person(rng), rng.choice(COMPANIES), rng.choice(TITLES)
    domain = company.split()[0].lower().replace("&", "") + ".com"
    email = f"{name.split()[0].lower()}.{name.split()[1].lower()}@{domain}"
    phone = f"+1 {rng.randint(200, 989)} 555 {rng.randint(1000, 9999)}"
    text = f"{rng.choice(OPENERS)}\n\nBest regards,\n{name}\n{title} | {company}\n{email} · {phone}"
    return text, {"name": name, "title": title, "company": company, "email": email, "phone": phone}


ORDER_SCHEMA = strict_object(
    {
        "order_id": {"type": "string"},
        "items": {
            "type": "array",
            "items": strict_object(
                {"name": {"type": "string"}, "quantity": {"type": "integer"}, "unit_price": {"type": "number"}}
            ),
        },
        "total": {"type": "number"},
        "currency": {"type": "string", "enum": ["USD", "EUR", "GBP"]},
    }
)
PRODUCTS = [
    ("Wireless mouse", "24.99"),
    ("USB-C hub", "39.50"),
    ("Laptop stand", "45.00"),
    ("Mechanical keyboard", "89.90"),
    ("HDMI cable", "9.99"),
    ("Webcam", "59.00"),
    ("Desk lamp", "32.75"),
    ("Noise-cancelling headphones", "149.00"),
]


def order_row(rng: random.Random) -> tuple[str, dict]:
    order_id = f"A-{rng.randint(10000, 99999)}"
    symbol, code = rng.choice(CURRENCIES)
    chosen = rng.sample(PRODUCTS, rng.randint(2, 3))
    items = [{"name": name, "quantity": rng.randint(1, 4), "unit_price": Decimal(price)} for name, price in chosen]
    total = sum((item["quantity"] * item["unit_price"] for item in items), Decimal(0))
    lines = "\n".join(f"  {i['quantity']} × {i['name']} @ {symbol}{money(i['unit_price'])}" for i in items)
    text = (
        f"Your order #{order_id} is confirmed and will ship within 2 business days.\n\n{lines}\n\n"
        f"Total charged: {symbol}{money(total)} ({code})"
    )
    expected_items = [
        {"name": i["name"], "quantity": i["quantity"], "unit_price": float(i["unit_price"])} for i in items
    ]
    return text, {"order_id": order_id, "items": expected_items, "total": float(total), "currency": code}


MEETING_SCHEMA = strict_object(
    {
        "title": {"type": "string", "description": "what the meeting is, without a leading article"},
        "date": {"type": "string", "pattern": DATE_PATTERN, "description": "YYYY-MM-DD"},
        "start_time": {"type": "string", "pattern": TIME_PATTERN, "description": "24-hour HH:MM"},
        "duration_minutes": {"type": "integer"},
        "attendees": {"type": "array", "items": {"type": "string"}, "description": "full names, as listed"},
    }
)
MEETINGS = ["quarterly budget review", "design kickoff", "incident retrospective", "hiring sync", "roadmap planning"]


def meeting_row(rng: random.Random) -> tuple[str, dict]:
    title, day = rng.choice(MEETINGS), date_in_2025(rng)
    hour, minute = rng.randint(8, 17), rng.choice([0, 15, 30, 45])
    duration = rng.choice([30, 45, 60, 90])
    attendees = people(rng, rng.randint(2, 4))
    invited = ", ".join(attendees[:-1]) + f" and {attendees[-1]}"
    text = (
        f"Hi all, the {title} is set for {long_date(day)} at {clock_12h(hour, minute)} in room 4B "
        f"and should take {duration} minutes. Invited: {invited}. Please bring last month's numbers."
    )
    expected = {
        "title": title,
        "date": day.isoformat(),
        "start_time": f"{hour:02d}:{minute:02d}",
        "duration_minutes": duration,
        "attendees": attendees,
    }
    return text, expected


JOB_SCHEMA = strict_object(
    {
        "job_title": {"type": "string"},
        "company": {"type": "string"},
        "location": {"type": "string", "description": "city"},
        "remote": {"type": "boolean", "description": "true only if the job is fully remote"},
        "salary_min": {"type": "integer", "description": "per year"},
        "salary_max": {"type": "integer", "description": "per year"},
    }
)
JOBS = ["Senior Backend Engineer", "Product Designer", "Data Analyst", "Site Reliability Engineer", "Account Executive"]


def job_row(rng: random.Random) -> tuple[str, dict]:
    job, company, (city, _) = rng.choice(JOBS), rng.choice(COMPANIES), rng.choice(CITIES)
    remote = rng.random() < 0.5
    low = rng.randint(60, 140) * 1000
    high = low + rng.randint(10, 40) * 1000
    where = f"fully remote (team based in {city})" if remote else f"on-site in our {city} office, five days a week"
    text = (
        f"{company} is hiring a {job}. The role is {where}. You will work closely with product and support "
        f"to ship improvements every week. Salary: ${low:,}–${high:,} per year plus equity. Apply by email."
    )
    expected = {
        "job_title": job,
        "company": company,
        "location": city,
        "remote": remote,
        "salary_min": low,
        "salary_max": high,
    }
    return text, expected


FLIGHT_SCHEMA = strict_object(
    {
        "passenger": {"type": "string"},
        "flight_number": {"type": "string"},
        "origin": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "IATA airport code"},
        "destination": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "IATA airport code"},
        "departure_date": {"type": "string", "pattern": DATE_PATTERN},
        "seat": {"type": "string"},
    }
)
AIRLINES = ["TP", "UA", "NH", "LH", "AC", "KQ", "QF", "IB", "SQ", "DL"]


def flight_row(rng: random.Random) -> tuple[str, dict]:
    (from_city, origin), (to_city, destination) = rng.sample(CITIES, 2)
    flight = f"{rng.choice(AIRLINES)}{rng.randint(100, 2999)}"
    day, name = date_in_2025(rng), person(rng)
    seat = f"{rng.randint(3, 42)}{rng.choice('ABCDEF')}"
    text = (
        f"Booking confirmed. Passenger: {name}. Flight {flight} from {from_city} ({origin}) to {to_city} "
        f"({destination}), departing {long_date(day)} at {clock_12h(rng.randint(6, 22), rng.choice([5, 20, 40]))}. "
        f"Seat {seat}. Check-in closes 45 minutes before departure."
    )
    expected = {
        "passenger": name,
        "flight_number": flight,
        "origin": origin,
        "destination": destination,
        "departure_date": day.isoformat(),
        "seat": seat,
    }
    return text, expected


BUG_SCHEMA = strict_object(
    {
        "component": {"type": "string"},
        "severity": {"type": "string", "enum": ["low", "medium", "high", "critical"]},
        "version": {"type": "string"},
        "reporter": {"type": "string"},
    }
)
BUGS = [
    ("export", "the CSV export times out for reports with more than 10,000 rows"),
    ("login", "users with a plus sign in their email address cannot sign in"),
    ("billing", "invoices show the previous month's exchange rate"),
    ("search", "results ignore the date filter when sorting by relevance"),
    ("notifications", "push notifications arrive twice on iOS"),
]


def bug_row(rng: random.Random) -> tuple[str, dict]:
    (component, symptom), severity = rng.choice(BUGS), rng.choice(["low", "medium", "high", "critical"])
    version, reporter = f"{rng.randint(1, 5)}.{rng.randint(0, 12)}.{rng.randint(0, 9)}", person(rng)
    text = (
        f"Bug report filed by {reporter}. Since upgrading to version {version}, {symptom}. "
        f"Affected component: {component}. Severity: {severity}. Steps to reproduce are in the attached log."
    )
    return text, {"component": component, "severity": severity, "version": version, "reporter": reporter}


LISTING_SCHEMA = strict_object(
    {
        "city": {"type": "string"},
        "bedrooms": {"type": "integer"},
        "bathrooms": {"type": "number"},
        "area_sqm": {"type": "integer"},
        "price": {"type": "integer", "description": "asking price in the listing's currency"},
        "has_parking": {"type": "boolean"},
    }
)


def listing_row(rng: random.Random) -> tuple[str, dict]:
    city, _ = rng.choice(CITIES)
    bedrooms, bathrooms = rng.randint(1, 5), rng.choice([1, 1.5, 2, 2.5, 3])
    area, price = rng.randint(40, 220), rng.randint(150, 1400) * 1000
    has_parking = rng.random() < 0.5
    parking = "An underground parking space is included." if has_parking else "No parking."
    text = (
        f"Bright {bedrooms}-bedroom apartment in central {city} with {bathrooms:g} bathrooms and {area} m² of "
        f"living space, close to shops and transport. {parking} Asking price: {price:,}. Viewings on weekends."
    )
    expected = {
        "city": city,
        "bedrooms": bedrooms,
        "bathrooms": bathrooms,
        "area_sqm": area,
        "price": price,
        "has_parking": has_parking,
    }
    return text, expected


INVOICE_SCHEMA = strict_object(
    {
        "invoice_number": {"type": "string"},
        "vendor": {"type": "string"},
        "due_date": {"type": "string", "pattern": DATE_PATTERN},
        "amount_due": {"type": "number"},
        "currency": {"type": "string", "enum": ["USD", "EUR", "GBP"], "description": "ISO 4217 code"},
    }
)


def invoice_row(rng: random.Random) -> tuple[str, dict]:
    number, vendor = f"INV-2025-{rng.randint(1, 9999):04d}", rng.choice(COMPANIES)
    symbol, code = rng.choice(CURRENCIES)
    amount = Decimal(rng.randint(5000, 900000)) / 100
    due = date_in_2025(rng)
    text = (
        f"INVOICE {number}\nFrom: {vendor}\nServices rendered: consulting and support, see itemised annex.\n"
        f"Amount due: {symbol}{money(amount)}\nPayment due by {due.day} {due:%B %Y}. Late payments incur 2% interest."
    )
    return text, {
        "invoice_number": number,
        "vendor": vendor,
        "due_date": due.isoformat(),
        "amount_due": float(amount),
        "currency": code,
    }


RECIPE_SCHEMA = strict_object(
    {
        "dish": {"type": "string"},
        "servings": {"type": "integer"},
        "prep_minutes": {"type": "integer", "description": "total preparation time in minutes"},
        "ingredients": {"type": "array", "items": {"type": "string"}},
    }
)
DISHES = [
    ("Spaghetti aglio e olio", ["spaghetti", "garlic", "olive oil", "chilli flakes", "parsley"]),
    ("Shakshuka", ["eggs", "tomatoes", "red pepper", "onion", "cumin"]),
    ("Chicken curry", ["chicken thighs", "onion", "ginger", "curry paste", "coconut milk"]),
    ("Lentil soup", ["red lentils", "carrots", "celery", "vegetable stock", "lemon"]),
    ("Pancakes", ["flour", "milk", "eggs", "butter", "sugar"]),
    ("Greek salad", ["tomatoes", "cucumber", "feta", "olives", "red onion"]),
]


def recipe_row(rng: random.Random) -> tuple[str, dict]:
    dish, ingredients = rng.choice(DISHES)
    servings, minutes = rng.randint(2, 6), rng.choice([15, 25, 40, 50, 70, 85, 95])
    hours, rest = divmod(minutes, 60)
    time_text = f"{hours} hour {rest} minutes" if hours else f"{minutes} minutes"
    text = (
        f"{dish} (serves {servings}). Preparation time: {time_text}.\n"
        f"You will need: {', '.join(ingredients)}.\nMethod: prepare the ingredients, cook, season to taste and serve."
    )
    return text, {"dish": dish, "servings": servings, "prep_minutes": minutes, "ingredients": ingredients}


RESERVATION_SCHEMA = strict_object(
    {
        "name": {"type": "string"},
        "party_size": {"type": "integer"},
        "date": {"type": "string", "pattern": DATE_PATTERN},
        "time": {"type": "string", "pattern": TIME_PATTERN, "description": "24-hour HH:MM"},
        "occasion": {"enum": ["birthday", "anniversary", "business", None], "description": "null if none is given"},
    }
)
OCCASION_TEXT = {
    "birthday": " It's my mother's birthday, so a quiet corner would be lovely.",
    "anniversary": " We're celebrating our wedding anniversary.",
    "business": " It's a business dinner, so we'll need to talk.",
    None: "",
}


def reservation_row(rng: random.Random) -> tuple[str, dict]:
    name, size, day = person(rng), rng.randint(2, 10), date_in_2025(rng)
    hour, minute = rng.randint(18, 21), rng.choice([0, 30])
    occasion = rng.choice(["birthday", "anniversary", "business", None])
    text = (
        f"Hello, this is {name}. Could I book a table for {size} on {long_date(day)} at "
        f"{clock_12h(hour, minute)}?{OCCASION_TEXT[occasion]} Thanks!"
    )
    return text, {
        "name": name,
        "party_size": size,
        "date": day.isoformat(),
        "time": f"{hour:02d}:{minute:02d}",
        "occasion": occasion,
    }


JSON_TEMPLATES = [
    (CONTACT_SCHEMA, contact_row),
    (ORDER_SCHEMA, order_row),
    (MEETING_SCHEMA, meeting_row),
    (JOB_SCHEMA, job_row),
    (FLIGHT_SCHEMA, flight_row),
    (BUG_SCHEMA, bug_row),
    (LISTING_SCHEMA, listing_row),
    (INVOICE_SCHEMA, invoice_row),
    (RECIPE_SCHEMA, recipe_row),
    (RESERVATION_SCHEMA, reservation_row),
]


def json_rows(rng: random.Random) -> list[dict]:
    rows, seen = [], set()
    for schema, make in JSON_TEMPLATES:
        for _ in range(VARIANTS_PER_TEMPLATE):
            text, expected = make(rng)
            while text in seen:  # a repeated draw: draw again
                text, expected = make(rng)
            seen.add(text)
            rows.append(
                {
                    "task_type": "json_extraction",
                    "messages": user(json_prompt(schema, text)),
                    "checker": {"kind": "json", "schema": schema},
                    "expected": expected,
                }
            )
    return rows


# --- classification: hand-written, one fixed label set per task ---------------------------------------------

CLASSIFICATION_TASKS = [
    (
        "the sentiment of this product review",
        ["positive", "negative", "neutral"],
        [
            ("Battery lasts two full days and the screen is gorgeous. Best phone I've owned.", "positive"),
            ("Arrived a day early, fits perfectly and the fabric feels premium. Would buy again.", "positive"),
            ("The blender crushes ice in seconds and is easy to clean. Love it.", "positive"),
            ("Setup took five minutes and the sound quality blew me away.", "positive"),
            ("Great value for the price; my kids use it every day and it still looks new.", "positive"),
            ("Stopped charging after a week and support never replied. Avoid.", "negative"),
            ("The zipper broke the first time I used it. Cheap materials, total waste of money.", "negative"),
            ("Smells like burnt plastic whenever it runs and it's painfully loud.", "negative"),
            ("Instructions were missing and two screws didn't fit. Returning it.", "negative"),
            ("The app crashes every time I try to sync. Very disappointed.", "negative"),
            ("It's a standard USB cable. Does what it says, nothing more.", "neutral"),
            ("Delivered on the date given. Colour is as pictured. Haven't used it much yet.", "neutral"),
            ("Average kettle: boils water in about four minutes, same as my old one.", "neutral"),
            ("Sizes match the chart. The material is thin, but it is priced accordingly.", "neutral"),
            ("It works. Packaging was plain. No strong feelings either way.", "neutral"),
        ],
    ),
    (
        "which team should handle this support ticket",
        ["billing", "technical", "account", "shipping"],
        [
            ("I was charged twice for my March subscription, please refund one of the payments.", "billing"),
            ("Can you send me a VAT invoice for order 55812? Our accounting team needs it.", "billing"),
            ("Why did my monthly price go up from $12 to $15 without any notice?", "billing"),
            ("My renewal payment failed but the bank says my card is fine. Can you retry the charge?", "billing"),
            ("The export to CSV button does nothing in Firefox; no file is downloaded.", "technical"),
            ("Since the latest update the app freezes on the loading screen on my Android phone.", "technical"),
            ("API requests return error 502 for about a minute every hour.", "technical"),
            ("The dashboard charts show no data after I connected my analytics source.", "technical"),
            ("I need to change the email address on my profile; my old one no longer exists.", "account"),
            ("Please delete my account and all data associated with it.", "account"),
            ("I'm locked out after too many login attempts and the reset link has expired.", "account"),
            ("How do I add a second administrator to our team workspace?", "account"),
            ("My parcel has shown 'in transit' for nine days. Tracking number 1Z884E.", "shipping"),
            ("The box arrived crushed and the lamp inside is broken.", "shipping"),
            ("Can I change the delivery address for an order I placed an hour ago?", "shipping"),
            ("Do you deliver to Norway, and how long does delivery take?", "shipping"),
        ],
    ),
    (
        "the topic of this news headline",
        ["sports", "politics", "business", "science", "entertainment"],
        [
            ("Late penalty sends Porto into the Champions League quarter-finals", "sports"),
            ("Marathon world record falls in Berlin as winner breaks the 2:01 barrier", "sports"),
            ("Veteran point guard signs one-year deal to return to Boston", "sports"),
            ("Senate passes budget bill after overnight session, sending it to the president", "politics"),
            ("Coalition talks collapse as junior partner walks out over pension reform", "politics"),
            ("Prime minister calls snap election for June", "politics"),
            ("Chipmaker shares jump 9% after quarterly revenue beats forecasts", "business"),
            ("Central bank holds interest rates at 4.5% for the third straight meeting", "business"),
            ("Airline to cut 2,000 jobs as fuel costs squeeze margins", "business"),
            ("Astronomers detect water vapour in the atmosphere of a distant exoplanet", "science"),
            ("New antibiotic class kills drug-resistant bacteria in mouse trials", "science"),
            ("Researchers map the complete brain wiring of a fruit fly", "science"),
            ("Streaming series about a Korean chef tops global charts for a third week", "entertainment"),
            ("Pop star announces stadium tour with 40 dates across Europe", "entertainment"),
            ("Film festival gives its top prize to a debut director's black-and-white drama", "entertainment"),
        ],
    ),
    (
        "the language of this sentence",
        ["english", "french", "spanish", "german", "italian", "portuguese"],
        [
            ("Could you tell me where the nearest train station is?", "english"),
            ("The meeting has been moved to Thursday afternoon.", "english"),
            ("Je voudrais réserver une table pour deux personnes ce soir.", "french"),
            ("Il fait très beau aujourd'hui, allons nous promener.", "french"),
            ("¿Dónde está la biblioteca más cercana?", "spanish"),
            ("Mañana vamos a visitar a mis abuelos en el campo.", "spanish"),
            ("Ich habe meinen Regenschirm im Zug vergessen.", "german"),
            ("Können Sie mir bitte die Rechnung bringen?", "german"),
            ("Vorrei un caffè e un cornetto, per favore.", "italian"),
            ("La riunione è stata spostata a giovedì.", "italian"),
            ("Obrigado pela ajuda, foi muito útil.", "portuguese"),
            ("Vamos almoçar juntos amanhã?", "portuguese"),
        ],
    ),
    (
        "whether this email is spam",
        ["spam", "legitimate"],
        [
            ("Congratulations! You've been selected for a $1,000 gift card. Claim it within 24 hours!", "spam"),
            ("URGENT: your account will be suspended. Verify your password at secure-login-update.biz", "spam"),
            ("Lose 10 kg in 7 days with this one weird trick doctors hate!!!", "spam"),
            ("You have an unclaimed inheritance of $4.5 million. Reply with your bank details to proceed.", "spam"),
            ("Cheap meds, no prescription needed, discreet shipping worldwide. Order now!", "spam"),
            (
                "Hi Sam, attached are the slides for tomorrow's 10am review. Tell me if anything is missing.",
                "legitimate",
            ),
            ("Your order #48213 has shipped and should arrive on Friday.", "legitimate"),
            ("Reminder: the office will be closed on Monday for the public holiday.", "legitimate"),
            ("Thanks for the interview today. We'll get back to you by the end of next week.", "legitimate"),
            ("Can you pick up milk on the way home?", "legitimate"),
        ],
    ),
]


def classification_rows() -> list[dict]:
    rows = []
    for what, labels, examples in CLASSIFICATION_TASKS:
        for text, label in examples:
            prompt = f"Classify {what}. Answer with exactly one label from: {', '.join(labels)}.\n\nText: {text}"
            rows.append(
                {
                    "task_type": "classification",
                    "messages": user(prompt),
                    "checker": {"kind": "label", "labels": labels},
                    "expected": label,
                }
            )
    return rows


# --- arithmetic: each template returns (question, exact answer, tolerance) -----------------------------------

INTEGER = 0.0  # tolerance for answers that are whole numbers
CENTS = 0.01  # tolerance for answers rounded to two decimal places
ROUND_NOTE = " Round to two decimal places."


def expression_problem(rng: random.Random) -> tuple[str, float, float]:
    a, b, c = rng.randint(120, 990), rng.randint(12, 99), rng.randint(100, 5000)
    return f"Compute {a} × {b} − {c:,}.", a * b - c, INTEGER


def bracket_problem(rng: random.Random) -> tuple[str, float, float]:
    a, b, c, d = rng.randint(10, 99), rng.randint(10, 99), rng.randint(3, 19), rng.randint(2, 9)
    return f"What is ({a} + {b}) × {c} − {d}²?", (a + b) * c - d * d, INTEGER


def shopping_problem(rng: random.Random) -> tuple[str, float, float]:
    name = rng.choice(FIRST_NAMES)
    n1, n2 = rng.randint(2, 6), rng.randint(1, 5)
    p1, p2 = Decimal(rng.randint(150, 1200)) / 100, Decimal(rng.randint(50, 500)) / 100
    question = (
        f"{name} buys {n1} notebooks at ${p1:.2f} each and {n2} pens at ${p2:.2f} each. "
        "How many dollars does she pay in total?"
    )
    return question, float(n1 * p1 + n2 * p2), CENTS


def discount_problem(rng: random.Random) -> tuple[str, float, float]:
    price, percent = rng.randint(20, 400), rng.choice([5, 10, 15, 20, 25, 30, 35, 40])
    question = f"A jacket costs ${price} and is discounted by {percent}%. What is the sale price in dollars?"
    return question, round2(Decimal(price) * (100 - percent) / 100), CENTS


def mean_problem(rng: random.Random) -> tuple[str, float, float]:
    values = [rng.randint(-5, 35) for _ in range(rng.randint(4, 7))]
    listed = ", ".join(str(v) for v in values)
    question = f"The daily low temperatures this week were {listed} °C. What was the mean?" + ROUND_NOTE
    return question, round2(Decimal(sum(values)) / len(values)), CENTS


def trip_problem(rng: random.Random) -> tuple[str, float, float]:
    start = rng.randint(5 * 60, 14 * 60)
    length = rng.randint(35, 480)
    end = start + length
    question = (
        f"A train leaves at {start // 60:02d}:{start % 60:02d} and arrives at {end // 60:02d}:{end % 60:02d} "
        "the same day. How many minutes does the trip take?"
    )
    return question, length, INTEGER


def seconds_problem(rng: random.Random) -> tuple[str, float, float]:
    hours, minutes, seconds = rng.randint(1, 9), rng.randint(1, 59), rng.randint(1, 59)
    question = f"How many seconds are there in {hours} hours, {minutes} minutes and {seconds} seconds?"
    return question, hours * 3600 + minutes * 60 + seconds, INTEGER


def distance_problem(rng: random.Random) -> tuple[str, float, float]:
    speed, half_hours = rng.randint(12, 95), rng.randint(1, 12)
    hours = Decimal(half_hours) / 2
    question = f"A cyclist rides at a steady {speed} km/h for {hours:g} hours. How many kilometres does she cover?"
    return question, float(speed * hours), CENTS


def carton_problem(rng: random.Random) -> tuple[str, float, float]:
    per_carton = rng.choice([6, 10, 12, 15, 24])
    eggs = rng.randint(100, 2000)
    if rng.random() < 0.5:
        return (
            f"{eggs:,} eggs are packed into cartons of {per_carton}. How many full cartons are there?",
            (eggs // per_carton),
            INTEGER,
        )
    return (
        f"{eggs:,} eggs are packed into cartons of {per_carton}. How many eggs are left over?",
        (eggs % per_carton),
        INTEGER,
    )


def bill_problem(rng: random.Random) -> tuple[str, float, float]:
    total = Decimal(rng.randint(4000, 40000)) / 100
    tip, diners = rng.choice([10, 12, 15, 18, 20]), rng.randint(2, 8)
    share = total * (100 + tip) / 100 / diners
    question = (
        f"A dinner bill is ${total:.2f}. The group adds a {tip}% tip and splits the total equally between "
        f"{diners} people. How many dollars does each person pay?" + ROUND_NOTE
    )
    return question, round2(share), CENTS


ARITHMETIC_TEMPLATES = [
    expression_problem,
    bracket_problem,
    shopping_problem,
    discount_problem,
    mean_problem,
    trip_problem,
    seconds_problem,
    distance_problem,
    carton_problem,
    bill_problem,
]


def arithmetic_rows(rng: random.Random) -> list[dict]:
    rows, seen = [], set()
    for make in ARITHMETIC_TEMPLATES:
        for _ in range(VARIANTS_PER_TEMPLATE):
            question, answer, tolerance = make(rng)
            while question in seen:  # a repeated draw: draw again
                question, answer, tolerance = make(rng)
            seen.add(question)
            rows.append(
                {
                    "task_type": "arithmetic",
                    "messages": user(f"{question} Show your working briefly, then give the final number last."),
                    "checker": {"kind": "number", "tolerance": tolerance},
                    "expected": int(answer) if float(answer).is_integer() else float(answer),
                }
            )
    return rows


# --- code: (function name, parameters, what it does, reference implementation) ------------------------------

CODE_TASKS: list[tuple[str, list[str], str, str]] = [
    (
        "is_palindrome",
        ["text"],
        "returns True if `text` reads the same backwards, ignoring case and non-alphanumeric characters",
        "def is_palindrome(text):\n    cleaned = [c.lower() for c in text if c.isalnum()]\n"
        "    return cleaned == cleaned[::-1]\n",
    ),
    (
        "word_count",
        ["text"],
        "returns the number of whitespace-separated words in `text`",
        "def word_count(text):\n    return len(text.split())\n",
    ),
    (
        "fizzbuzz",
        ["n"],
        "returns a list of strings for 1..n with 'Fizz' for multiples of 3, 'Buzz' for 5 and 'FizzBuzz' for both",
        "def fizzbuzz(n):\n    out = []\n    for i in range(1, n + 1):\n        word = ''\n"
        "        if i % 3 == 0:\n            word += 'Fizz'\n        if i % 5 == 0:\n            word += 'Buzz'\n"
        "        out.append(word or str(i))\n    return out\n",
    ),
    (
        "factorial",
        ["n"],
        "returns n! for a non-negative integer n, iteratively",
        "def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result\n",
    ),
    (
        "fibonacci",
        ["n"],
        "returns the n-th Fibonacci number, with fibonacci(0) == 0 and fibonacci(1) == 1",
        "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    ),
    (
        "is_prime",
        ["n"],
        "returns True if the integer n is prime",
        "def is_prime(n):\n    if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n"
        "        if n % i == 0:\n            return False\n        i += 1\n    return True\n",
    ),
    (
        "gcd",
        ["a", "b"],
        "returns the greatest common divisor of two non-negative integers using Euclid's algorithm",
        "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n",
    ),
    (
        "flatten",
        ["nested"],
        "flattens a list of lists by one level",
        "def flatten(nested):\n    return [item for sub in nested for item in sub]\n",
    ),
    (
        "chunk",
        ["items", "size"],
        "splits a list into consecutive chunks of at most `size` elements",
        "def chunk(items, size):\n    return [items[i:i + size] for i in range(0, len(items), size)]\n",
    ),
    (
        "reverse_words",
        ["sentence"],
        "returns the sentence with its words in reverse order, separated by single spaces",
        "def reverse_words(sentence):\n    return ' '.join(reversed(sentence.split()))\n",
    ),
    (
        "count_vowels",
        ["text"],
        "counts the vowels (a, e, i, o, u, either case) in `text`",
        "def count_vowels(text):\n    return sum(1 for c in text.lower() if c in 'aeiou')\n",
    ),
    (
        "celsius_to_fahrenheit",
        ["celsius"],
        "converts a temperature from Celsius to Fahrenheit",
        "def celsius_to_fahrenheit(celsius):\n    return celsius * 9 / 5 + 32\n",
    ),
    (
        "merge_dicts",
        ["a", "b"],
        "returns a new dict with the keys of both; values from `b` win on conflicts",
        "def merge_dicts(a, b):\n    merged = dict(a)\n    merged.update(b)\n    return merged\n",
    ),
    (
        "unique_sorted",
        ["items"],
        "returns the distinct elements of `items` in ascending order",
        "def unique_sorted(items):\n    return sorted(set(items))\n",
    ),
    (
        "second_largest",
        ["numbers"],
        "returns the second largest distinct number, or None if there are fewer than two distinct numbers",
        "def second_largest(numbers):\n    distinct = sorted(set(numbers))\n"
        "    return distinct[-2] if len(distinct) >= 2 else None\n",
    ),
    (
        "running_total",
        ["numbers"],
        "returns the list of cumulative sums of `numbers`",
        "def running_total(numbers):\n    totals, acc = [], 0\n    for x in numbers:\n        acc += x\n"
        "        totals.append(acc)\n    return totals\n",
    ),
    (
        "dedupe",
        ["items"],
        "removes duplicates from a list while keeping the first occurrence of each element in order",
        "def dedupe(items):\n    seen = set()\n    out = []\n    for item in items:\n        if item not in seen:\n"
        "            seen.add(item)\n            out.append(item)\n    return out\n",
    ),
    (
        "parse_kv",
        ["line"],
        "parses a string like 'a=1;b=2' into a dict of strings {'a': '1', 'b': '2'}, ignoring empty parts",
        "def parse_kv(line):\n    result = {}\n    for part in line.split(';'):\n        if part.strip():\n"
        "            key, _, value = part.partition('=')\n            result[key.strip()] = value.strip()\n"
        "    return result\n",
    ),
    (
        "median",
        ["values"],
        "returns the median of a non-empty list of numbers",
        "def median(values):\n    s = sorted(values)\n    mid = len(s) // 2\n"
        "    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2\n",
    ),
    (
        "transpose",
        ["matrix"],
        "returns the transpose of a rectangular matrix given as a list of lists",
        "def transpose(matrix):\n    return [list(row) for row in zip(*matrix)]\n",
    ),
    (
        "is_anagram",
        ["a", "b"],
        "returns True if the two strings are anagrams of each other, ignoring case and spaces",
        "def is_anagram(a, b):\n    def key(s):\n        return sorted(s.replace(' ', '').lower())\n"
        "    return key(a) == key(b)\n",
    ),
    (
        "char_frequency",
        ["text"],
        "returns a dict mapping each character of `text` to how often it occurs",
        "def char_frequency(text):\n    counts = {}\n    for c in text:\n        counts[c] = counts.get(c, 0) + 1\n"
        "    return counts\n",
    ),
    (
        "clamp",
        ["value", "low", "high"],
        "returns `value` limited to the closed interval [low, high]",
        "def clamp(value, low, high):\n    return max(low, min(value, high))\n",
    ),
    (
        "binary_search",
        ["items", "target"],
        "returns the index of `target` in the sorted list `items`, or -1 if it is absent",
        "def binary_search(items, target):\n    lo, hi = 0, len(items) - 1\n    while lo <= hi:\n"
        "        mid = (lo + hi) // 2\n        if items[mid] == target:\n            return mid\n"
        "        if items[mid] < target:\n            lo = mid + 1\n        else:\n            hi = mid - 1\n"
        "    return -1\n",
    ),
    (
        "rotate_left",
        ["items", "k"],
        "returns the list rotated left by k positions (k may exceed the length)",
        "def rotate_left(items, k):\n    if not items:\n        return []\n    k %= len(items)\n"
        "    return items[k:] + items[:k]\n",
    ),
    (
        "snake_to_camel",
        ["name"],
        "converts a snake_case identifier to camelCase",
        "def snake_to_camel(name):\n    first, *rest = name.split('_')\n"
        "    return first + ''.join(part.capitalize() for part in rest)\n",
    ),
    (
        "camel_to_snake",
        ["name"],
        "converts a camelCase identifier to snake_case",
        "def camel_to_snake(name):\n    out = []\n    for c in name:\n        if c.isupper():\n"
        "            out.append('_')\n        out.append(c.lower())\n    return ''.join(out).lstrip('_')\n",
    ),
    (
        "roman_to_int",
        ["numeral"],
        "converts a Roman numeral such as 'MCMXCIV' to an integer",
        "def roman_to_int(numeral):\n    values = {'I': 1, 'V': 5, 'X': 10, 'L': 50, 'C': 100, 'D': 500, 'M': 1000}\n"
        "    total = 0\n    for i, c in enumerate(numeral):\n        v = values[c]\n"
        "        if i + 1 < len(numeral) and values[numeral[i + 1]] > v:\n            total -= v\n"
        "        else:\n            total += v\n    return total\n",
    ),
    (
        "to_binary",
        ["n"],
        "returns the binary representation of a non-negative integer as a string without the '0b' prefix",
        "def to_binary(n):\n    if n == 0:\n        return '0'\n    digits = []\n    while n:\n"
        "        digits.append(str(n % 2))\n        n //= 2\n    return ''.join(reversed(digits))\n",
    ),
    (
        "digit_sum",
        ["n"],
        "returns the sum of the decimal digits of an integer (ignoring its sign)",
        "def digit_sum(n):\n    return sum(int(d) for d in str(abs(n)))\n",
    ),
    (
        "is_leap_year",
        ["year"],
        "returns True if `year` is a leap year in the Gregorian calendar",
        "def is_leap_year(year):\n    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)\n",
    ),
    (
        "days_in_month",
        ["year", "month"],
        "returns the number of days in the given month (1-12) of the given year",
        "def days_in_month(year, month):\n    if month == 2:\n"
        "        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)\n        return 29 if leap else 28\n"
        "    return 30 if month in (4, 6, 9, 11) else 31\n",
    ),
    (
        "is_valid_email",
        ["address"],
        "returns True if `address` looks like an email address (one '@', a dot in the domain, no spaces)",
        "import re\n\n\ndef is_valid_email(address):\n"
        "    return re.fullmatch(r'[^@\\s]+@[^@\\s]+\\.[^@\\s]+', address) is not None\n",
    ),
    (
        "mask_card",
        ["number"],
        "masks a card number string so that only its last four digits stay visible, replacing the others with '*'",
        "def mask_card(number):\n    digits = number.replace(' ', '')\n"
        "    return '*' * (len(digits) - 4) + digits[-4:]\n",
    ),
    (
        "top_k_words",
        ["words", "k"],
        "returns the k most frequent words, most frequent first (ties in any order)",
        "from collections import Counter\n\n\ndef top_k_words(words, k):\n"
        "    return [word for word, _ in Counter(words).most_common(k)]\n",
    ),
    (
        "group_by_length",
        ["words"],
        "returns a dict mapping each word length to the list of words with that length",
        "def group_by_length(words):\n    groups = {}\n    for word in words:\n"
        "        groups.setdefault(len(word), []).append(word)\n    return groups\n",
    ),
    (
        "moving_average",
        ["values", "window"],
        "returns the list of averages of each run of `window` consecutive values",
        "def moving_average(values, window):\n"
        "    return [sum(values[i:i + window]) / window for i in range(len(values) - window + 1)]\n",
    ),
    (
        "dot_product",
        ["a", "b"],
        "returns the dot product of two equal-length lists of numbers",
        "def dot_product(a, b):\n    return sum(x * y for x, y in zip(a, b))\n",
    ),
    (
        "matrix_multiply",
        ["a", "b"],
        "multiplies two matrices given as lists of lists",
        "def matrix_multiply(a, b):\n"
        "    return [[sum(x * y for x, y in zip(row, col)) for col in zip(*b)] for row in a]\n",
    ),
    (
        "normalize_whitespace",
        ["text"],
        "collapses every run of whitespace in `text` into a single space and trims both ends",
        "def normalize_whitespace(text):\n    return ' '.join(text.split())\n",
    ),
    (
        "truncate",
        ["text", "max_chars"],
        "shortens `text` to at most `max_chars` characters, ending with '...' when it was cut",
        "def truncate(text, max_chars):\n    if len(text) <= max_chars:\n        return text\n"
        "    return text[:max(max_chars - 3, 0)] + '...'\n",
    ),
    (
        "parse_duration",
        ["text"],
        "converts a duration such as '1h30m' or '45s' or '2h5m10s' to a number of seconds",
        "import re\n\n\ndef parse_duration(text):\n    units = {'h': 3600, 'm': 60, 's': 1}\n"
        "    return sum(int(n) * units[u] for n, u in re.findall(r'(\\d+)([hms])', text))\n",
    ),
    (
        "count_lines",
        ["path"],
        "returns the number of lines in the text file at `path`",
        "def count_lines(path):\n    with open(path, encoding='utf-8') as f:\n        return sum(1 for _ in f)\n",
    ),
    (
        "safe_divide",
        ["a", "b", "default"],
        "returns a / b, or `default` when b is zero",
        "def safe_divide(a, b, default):\n    return default if b == 0 else a / b\n",
    ),
    (
        "levenshtein",
        ["a", "b"],
        "returns the Levenshtein edit distance between two strings",
        "def levenshtein(a, b):\n    previous = list(range(len(b) + 1))\n    for i, ca in enumerate(a, 1):\n"
        "        current = [i]\n        for j, cb in enumerate(b, 1):\n"
        "            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))\n"
        "        previous = current\n    return previous[-1]\n",
    ),
    (
        "slugify",
        ["title"],
        "turns a title into a URL slug: lower case, words joined by '-', other characters dropped",
        "import re\n\n\ndef slugify(title):\n    words = re.findall(r'[a-z0-9]+', title.lower())\n"
        "    return '-'.join(words)\n",
    ),
    (
        "percent_change",
        ["old", "new"],
        "returns the percentage change from `old` to `new` (e.g. 50 -> 75 gives 50.0)",
        "def percent_change(old, new):\n    return (new - old) / old * 100\n",
    ),
    (
        "bmi",
        ["weight_kg", "height_m"],
        "returns the body-mass index, weight in kilograms divided by the square of height in metres",
        "def bmi(weight_kg, height_m):\n    return weight_kg / height_m ** 2\n",
    ),
    (
        "run_length_encode",
        ["text"],
        "run-length encodes a string, e.g. 'aaabcc' -> 'a3b1c2'",
        "def run_length_encode(text):\n    out = []\n    i = 0\n    while i < len(text):\n        j = i\n"
        "        while j < len(text) and text[j] == text[i]:\n            j += 1\n"
        "        out.append(f'{text[i]}{j - i}')\n        i = j\n    return ''.join(out)\n",
    ),
    (
        "is_balanced",
        ["brackets"],
        "returns True if every (, [ and { in the string is closed in the right order",
        "def is_balanced(brackets):\n    pairs = {')': '(', ']': '[', '}': '{'}\n    stack = []\n"
        "    for c in brackets:\n        if c in '([{':\n            stack.append(c)\n        elif c in pairs:\n"
        "            if not stack or stack.pop() != pairs[c]:\n                return False\n    return not stack\n",
    ),
    (
        "capitalize_words",
        ["text"],
        "returns `text` with the first letter of every word upper-cased",
        "def capitalize_words(text):\n    return ' '.join(word[:1].upper() + word[1:] for word in text.split(' '))\n",
    ),
    (
        "pairwise_max",
        ["a", "b"],
        "returns the element-wise maximum of two equal-length lists",
        "def pairwise_max(a, b):\n    return [max(x, y) for x, y in zip(a, b)]\n",
    ),
]


def code_rows() -> list[dict]:
    rows = []
    for name, params, what, reference in CODE_TASKS:
        prompt = (
            f"Write a Python function `{name}({', '.join(params)})` that {what}. "
            "Use only the standard library. Reply with the code in a ```python block."
        )
        rows.append(
            {
                "task_type": "code",
                "messages": user(prompt),
                "checker": {"kind": "python_function", "function_name": name, "num_params": len(params)},
                "expected": reference,
            }
        )
    return rows


# --- the file -----------------------------------------------------------------------------------------------

ID_PREFIX = {"json_extraction": "json", "classification": "cls", "arithmetic": "math", "code": "code"}


def build_rows() -> list[dict]:
    """Every row of the evaluation set, ids numbered per task type; the same list on every call."""
    rng = random.Random(SEED)
    rows = json_rows(rng) + classification_rows() + arithmetic_rows(rng) + code_rows()
    numbered = []
    counters: dict[str, int] = {}
    for row in rows:
        prefix = ID_PREFIX[row["task_type"]]
        counters[prefix] = counters.get(prefix, 0) + 1
        numbered.append({"id": f"{prefix}-{counters[prefix]:03d}", **row})
    return numbered


def evalset_text(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main() -> None:
    rows = build_rows()
    OUT_PATH.parent.mkdir(parents=True, exist_ok=True)
    OUT_PATH.write_text(evalset_text(rows), encoding="utf-8")
    counts = {t: sum(r["task_type"] == t for r in rows) for t in ID_PREFIX}
    print(f"wrote {len(rows)} rows to {OUT_PATH}: {counts}")


if __name__ == "__main__":
    main()
