"""The products a US futures-options desk trades: CME, CBOT, NYMEX and COMEX futures and their
standard options, one `Product` each, from the exchange's contract specifications.

Each entry names its source (`source`, the CME contract-specification page of the options, which
also states the future's). Where CME's pages and practice differ, or a detail could not be
confirmed, the entry says so and takes the side that cannot produce an invalid order or a
contract traded past its end: the coarser tick of two (every price on a coarser grid is on the
finer one), the earlier of two last-trading times. docs/brokers/products.md explains each choice.

Prices are in the exchange's quotation unit: grains and livestock in cents (IB's price magnifier
100: its multiplier is ours x 100), Treasuries in points of par (shown in 32nds by `price_text`).
"""
from __future__ import annotations

from datetime import time

from brokers.products.model import Product, TickRule

EQUITY_QUARTERLY = (3, 6, 9, 12)
EVERY_MONTH = tuple(range(1, 13))
_CME = "https://www.cmegroup.com/trading"

# E-mini equity index options: quarterly options stop with the future at 08:30 CT on the third
# Friday, are American and exercise into the expiring future (settled to the Special Opening
# Quotation); the serial (Week-3) options stop at 15:00 CT that Friday, are European and exercise
# into the next quarterly future at the 15:00 CT fixing.
_EQUITY = dict(
    futures_months=EQUITY_QUARTERLY, future_last_trade_rule="third_friday", future_last_trade_time=time(8, 30),
    option_expiry_rule="third_friday", quarterly_option_last_trade_time=time(8, 30),
    serial_option_last_trade_time=time(15, 0), serial_options=True, exercise_style="american",
    serial_exercise_style="european", settlement="cash", calendar="CME Globex Equity", roll_rule="equity_index",
)
_ENERGY = dict(
    futures_months=EVERY_MONTH, serial_options=False, exercise_style="american", settlement="physical",
    calendar="CMEGlobex_Energy", roll_rule="business_days_before",
)
_METALS = dict(
    future_last_trade_rule="third_last_business_day", option_expiry_rule="metals", serial_options=True,
    exercise_style="american", settlement="physical", calendar="CMEGlobex_Metals",
    roll_rule="before_first_notice", roll_business_days=5,
)
# Treasury options stop on the last Friday at least two business days before the last business
# day of the month before the option month (a holiday Friday: the business day before), at the
# close of the regular CME Globex session of the future, 16:00 CT (CME's options specs; in or out
# of the money is decided by the future's 14:00 CT settlement, and the options trade on to 16:00
# CT, as CME's weekly-Treasury-options FAQ says of Friday expiries); serial months exercise into
# the next quarterly future.
_TREASURY = dict(
    exchange="CBOT", price_unit="points of par", price_format="32nds", futures_months=EQUITY_QUARTERLY,
    future_last_trade_time=time(12, 1), option_expiry_rule="cbot_friday",
    quarterly_option_last_trade_time=time(16, 0), serial_options=True, exercise_style="american",
    settlement="physical", calendar="CBOT_InterestRate", roll_rule="before_first_notice", roll_business_days=5,
)
# Grain options stop on the same CBOT Friday as Treasury options, at the 13:20 CT close of the
# Globex day session (CBOT SER #7395, 2015: expiring options trade to 13:20 CT; expiring grain
# futures stop at 12:00 CT).
_GRAINS = dict(
    exchange="CBOT", multiplier=50.0, price_magnifier=100, price_unit="cents/bu", future_tick=0.25,
    option_tick_rule=TickRule(0.125), future_last_trade_rule="before_fifteenth", future_last_trade_time=time(12, 0),
    option_expiry_rule="cbot_friday", quarterly_option_last_trade_time=time(13, 20), serial_options=True,
    exercise_style="american", settlement="physical", calendar="CBOT_Agriculture",
    roll_rule="before_first_notice", roll_business_days=5,
)
# Currency options (EUU, JPU): European, stop at 09:00 CT on the second Friday before the third
# Wednesday, monthly and quarterly alike; the futures stop at 09:16 CT two business days before it.
# Sessions: CME FX trades through Monday holidays to its regular 16:00 CT halt (CME's 2026
# schedule for Martin Luther King Jr. Day), as the library's CMEGlobex_FX calendar has it.
_FX = dict(
    exchange="CME", futures_months=EQUITY_QUARTERLY, future_last_trade_rule="fx", future_last_trade_time=time(9, 16),
    option_expiry_rule="fx", quarterly_option_last_trade_time=time(9, 0), serial_options=True,
    exercise_style="european", settlement="physical", calendar="CMEGlobex_FX",
    roll_rule="business_days_before", roll_business_days=5,
)
_LIVESTOCK = dict(
    exchange="CME", multiplier=400.0, price_magnifier=100, price_unit="cents/lb", future_tick=0.025,
    option_tick_rule=TickRule(0.025), exercise_style="american", calendar="CMEGlobex_Livestock",
)

PRODUCT_LIST: tuple[Product, ...] = (
    # --- equity indices (cash-settled futures) ---------------------------------------------
    Product(symbol="ES", description="E-mini S&P 500", exchange="CME", multiplier=50.0, price_unit="index points",
            future_tick=0.25, option_tick_rule=TickRule(0.25, 0.05, 5.0), option_trading_class="ES",
            serial_option_trading_class="EW3", reference_price=6000.0, reference_vol=0.18,
            source=f"{_CME}/equity-index/us-index/e-mini-sandp500_contractSpecs_options.html", **_EQUITY),
    # MES options: CME's newest page names a 10.00 reduced-tick threshold, its earlier ones 5.00;
    # 5.00 is kept, its grid being valid under both (docs/brokers/products.md, "unverified").
    Product(symbol="MES", description="Micro E-mini S&P 500", exchange="CME", multiplier=5.0,
            price_unit="index points", future_tick=0.25, option_tick_rule=TickRule(0.25, 0.05, 5.0),
            option_trading_class="MES", serial_option_trading_class="EX3", reference_price=6000.0,
            reference_vol=0.18, commission_per_contract=0.62,
            source=f"{_CME}/equity-index/us-index/micro-e-mini-sandp-500_contractSpecs_options.html", **_EQUITY),
    Product(symbol="NQ", description="E-mini Nasdaq-100", exchange="CME", multiplier=20.0, price_unit="index points",
            future_tick=0.25, option_tick_rule=TickRule(0.25, 0.05, 5.0), option_trading_class="NQ",
            serial_option_trading_class="QN3", reference_price=21000.0, reference_vol=0.22,
            source=f"{_CME}/equity-index/us-index/e-mini-nasdaq-100_contractSpecs_options.html", **_EQUITY),
    Product(symbol="MNQ", description="Micro E-mini Nasdaq-100", exchange="CME", multiplier=2.0,
            price_unit="index points", future_tick=0.25, option_tick_rule=TickRule(0.25, 0.05, 5.0),
            option_trading_class="MNQ", serial_option_trading_class="MQ3", reference_price=21000.0,
            reference_vol=0.22, commission_per_contract=0.62,
            source=f"{_CME}/equity-index/us-index/micro-e-mini-nasdaq-100_contractSpecs_options.html", **_EQUITY),
    # YM options: 1.00 point above a 4.00 premium, $1.00 (0.20 point) increments at or below it.
    Product(symbol="YM", description="E-mini Dow ($5)", exchange="CBOT", multiplier=5.0, price_unit="index points",
            future_tick=1.0, option_tick_rule=TickRule(1.0, 0.2, 4.0), option_trading_class="OYM",
            serial_option_trading_class="YM3", reference_price=44000.0, reference_vol=0.16,
            source=f"{_CME}/equity-index/us-index/e-mini-dow_contractSpecs_options.html", **_EQUITY),
    Product(symbol="RTY", description="E-mini Russell 2000", exchange="CME", multiplier=50.0,
            price_unit="index points", future_tick=0.10, option_tick_rule=TickRule(0.10, 0.05, 5.0),
            option_trading_class="RTO", serial_option_trading_class="R3E", reference_price=2300.0,
            reference_vol=0.24,
            source=f"{_CME}/equity-index/us-index/e-mini-russell-2000_contractSpecs_options.html", **_EQUITY),
    # --- energy (NYMEX) -----------------------------------------------------------------------
    # CL: trading ends 3 business days before the 25th of the month before the contract month (4
    # when the 25th is not a business day), 13:30 CT; LO options 3 business days before that.
    Product(symbol="CL", description="Crude Oil (WTI)", exchange="NYMEX", multiplier=1000.0, price_unit="USD/bbl",
            future_tick=0.01, option_tick_rule=TickRule(0.01), future_last_trade_rule="crude",
            future_last_trade_time=time(13, 30), option_trading_class="LO", option_expiry_rule="crude",
            quarterly_option_last_trade_time=time(13, 30), reference_price=70.0, reference_vol=0.35,
            roll_business_days=5,
            source=f"{_CME}/energy/crude-oil/light-sweet-crude_contractSpecs_options.html", **_ENERGY),
    # NG: 3 business days before the first day of the contract month (its 3rd last business day of
    # the month before). The options are CME's American ones (Globex and clearing code ON), which
    # exercise into the future and stop the business day before it. LNE is another product: the
    # European, financially settled options (clearing code LN), on the same expiry day.
    Product(symbol="NG", description="Henry Hub Natural Gas", exchange="NYMEX", multiplier=10000.0,
            price_unit="USD/MMBtu", future_tick=0.001, option_tick_rule=TickRule(0.001),
            future_last_trade_rule="natural_gas", future_last_trade_time=time(13, 30), option_trading_class="ON",
            option_expiry_rule="natural_gas", quarterly_option_last_trade_time=time(13, 30), reference_price=3.5,
            reference_vol=0.60, roll_business_days=3,
            source=f"{_CME}/energy/natural-gas/natural-gas_contractSpecs_options.html", **_ENERGY),
    # --- metals (COMEX) -----------------------------------------------------------------------
    # The cycle a desk trades (GC: Feb, Apr, Jun, Aug, Oct, Dec; SI and HG: Mar, May, Jul, Sep,
    # Dec); CME also lists the nearby calendar months, thinly traded. Options of every month
    # stop on the 4th last business day of the month before (a Friday or a day before a holiday:
    # the business day before), at the metal's settlement time, and exercise into the next
    # cycle future (a January gold option into February).
    Product(symbol="GC", description="Gold", exchange="COMEX", multiplier=100.0, price_unit="USD/oz",
            future_tick=0.10, option_tick_rule=TickRule(0.10), futures_months=(2, 4, 6, 8, 10, 12),
            future_last_trade_time=time(12, 30), option_trading_class="OG",
            quarterly_option_last_trade_time=time(12, 30), reference_price=2600.0, reference_vol=0.16,
            source=f"{_CME}/metals/precious/gold_contractSpecs_options.html", **_METALS),
    Product(symbol="SI", description="Silver", exchange="COMEX", multiplier=5000.0, price_unit="USD/oz",
            future_tick=0.005, option_tick_rule=TickRule(0.001), futures_months=(3, 5, 7, 9, 12),
            future_last_trade_time=time(12, 25), option_trading_class="SO",
            quarterly_option_last_trade_time=time(12, 25), reference_price=31.0, reference_vol=0.28,
            source=f"{_CME}/metals/precious/silver_contractSpecs_options.html", **_METALS),
    Product(symbol="HG", description="Copper", exchange="COMEX", multiplier=25000.0, price_unit="USD/lb",
            future_tick=0.0005, option_tick_rule=TickRule(0.0005), futures_months=(3, 5, 7, 9, 12),
            future_last_trade_time=time(12, 0), option_trading_class="HXE",
            quarterly_option_last_trade_time=time(12, 0), reference_price=4.3, reference_vol=0.24,
            source=f"{_CME}/metals/base/copper_contractSpecs_options.html", **_METALS),
    # --- Treasuries (CBOT): futures in 32nds and fractions of them, options in 64ths -------
    Product(symbol="ZN", description="10-Year T-Note", multiplier=1000.0, future_tick=1 / 64,
            option_tick_rule=TickRule(1 / 64), future_last_trade_rule="seventh_before_last_business_day",
            option_trading_class="OZN", reference_price=110.5, reference_vol=0.06,
            source=f"{_CME}/interest-rates/us-treasury/10-year-us-treasury-note_contractSpecs_options.html",
            **_TREASURY),
    Product(symbol="ZB", description="U.S. Treasury Bond", multiplier=1000.0, future_tick=1 / 32,
            option_tick_rule=TickRule(1 / 64), future_last_trade_rule="seventh_before_last_business_day",
            option_trading_class="OZB", reference_price=117.0, reference_vol=0.10,
            source=f"{_CME}/interest-rates/us-treasury/30-year-us-treasury-bond_contractSpecs_options.html",
            **_TREASURY),
    Product(symbol="ZF", description="5-Year T-Note", multiplier=1000.0, future_tick=1 / 128,
            option_tick_rule=TickRule(1 / 128), future_last_trade_rule="last_business_day",
            option_trading_class="OZF", reference_price=107.0, reference_vol=0.045,
            source=f"{_CME}/interest-rates/us-treasury/5-year-us-treasury-note_contractSpecs_options.html",
            **_TREASURY),
    # ZT: $200,000 face, so $2,000 a point; the future ticks in eighths of a 32nd since 2015.
    Product(symbol="ZT", description="2-Year T-Note", multiplier=2000.0, future_tick=1 / 256,
            option_tick_rule=TickRule(1 / 128), future_last_trade_rule="last_business_day",
            option_trading_class="OZT", reference_price=103.0, reference_vol=0.02,
            source=f"{_CME}/interest-rates/us-treasury/2-year-us-treasury-note_contractSpecs_options.html",
            **_TREASURY),
    # --- grains (CBOT), in cents a bushel ---------------------------------------------------
    Product(symbol="ZC", description="Corn", futures_months=(3, 5, 7, 9, 12), option_trading_class="OZC",
            reference_price=450.0, reference_vol=0.25,
            source=f"{_CME}/agricultural/grain-and-oilseed/corn_contractSpecs_options.html", **_GRAINS),
    Product(symbol="ZS", description="Soybeans", futures_months=(1, 3, 5, 7, 8, 9, 11), option_trading_class="OZS",
            reference_price=1000.0, reference_vol=0.20,
            source=f"{_CME}/agricultural/grain-and-oilseed/soybean_contractSpecs_options.html", **_GRAINS),
    Product(symbol="ZW", description="Chicago SRW Wheat", futures_months=(3, 5, 7, 9, 12), option_trading_class="OZW",
            reference_price=550.0, reference_vol=0.30,
            source=f"{_CME}/agricultural/grain-and-oilseed/wheat_contractSpecs_options.html", **_GRAINS),
    # --- currencies (CME) -------------------------------------------------------------------
    Product(symbol="6E", description="Euro FX", multiplier=125000.0, price_unit="USD/EUR", future_tick=0.00005,
            option_tick_rule=TickRule(0.0001, 0.00005, 0.0005), option_trading_class="EUU",
            reference_price=1.08, reference_vol=0.08,
            source=f"{_CME}/fx/g10/euro-fx_contractSpecs_options.html", **_FX),
    Product(symbol="6J", description="Japanese Yen", multiplier=12_500_000.0, price_unit="USD/JPY",
            future_tick=0.0000005, option_tick_rule=TickRule(0.000001, 0.0000005, 0.000005),
            option_trading_class="JPU", reference_price=0.0067, reference_vol=0.10,
            source=f"{_CME}/fx/g10/japanese-yen_contractSpecs_options.html", **_FX),
    # --- livestock (CME), in cents a pound ----------------------------------------------------
    # LE: the future ends at 12:00 CT on the last business day of its month and is delivered;
    # options end on the first Friday of their month (13:00 CT), serial months on the next future
    # (the serial months are unverified: docs/brokers/products.md).
    Product(symbol="LE", description="Live Cattle", futures_months=(2, 4, 6, 8, 10, 12),
            future_last_trade_rule="last_business_day", future_last_trade_time=time(12, 0),
            option_trading_class="LE", option_expiry_rule="first_friday",
            quarterly_option_last_trade_time=time(13, 0), serial_options=True, settlement="physical",
            roll_rule="before_first_notice", roll_business_days=5, reference_price=190.0, reference_vol=0.15,
            source=f"{_CME}/agricultural/livestock/live-cattle_contractSpecs_options.html", **_LIVESTOCK),
    # HE: cash-settled to the CME Lean Hog Index on the 10th business day of its month, 12:00 CT;
    # its options end with it.
    Product(symbol="HE", description="Lean Hogs", futures_months=(2, 4, 5, 6, 7, 8, 10, 12),
            future_last_trade_rule="tenth_business_day", future_last_trade_time=time(12, 0),
            option_trading_class="HE", option_expiry_rule="with_future", quarterly_option_last_trade_time=time(12, 0),
            serial_options=False, settlement="cash", roll_rule="business_days_before", roll_business_days=5,
            reference_price=85.0, reference_vol=0.25,
            source=f"{_CME}/agricultural/livestock/lean-hogs_contractSpecs_options.html", **_LIVESTOCK),
)

PRODUCTS: dict[str, Product] = {product.symbol: product for product in PRODUCT_LIST}
